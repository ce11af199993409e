//! The requests a run sends. A static request is encoded and framed once; a list of
//! messages (`data = [...]` or `data_file`) is encoded once per message and sent round-robin;
//! a templated message is validated once and, per request, cloned, filled in and encoded
//! once.

use bytes::Bytes;
use prost::Message;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor, Value,
};

use super::frame::frame;
use super::template::{Context, Template};
use crate::vocabulary::problems::{Problem, Problems};
use crate::vocabulary::{Call, Compression, DataOrder, Loc, RequestMessage};

/// A step from a message to a templated value.
#[derive(Debug, Clone)]
enum Step {
    Field(FieldDescriptor),
    Index(usize),
}

#[derive(Debug, Clone)]
struct TemplatedField {
    steps: Vec<Step>,
    kind: Kind,
    template: Template,
}

#[derive(Debug, Clone)]
struct Prepared {
    base: DynamicMessage,
    /// Framed once when the message has no templates.
    frame: Option<Bytes>,
    fields: Vec<TemplatedField>,
}

/// The requests of a run.
#[derive(Debug, Clone)]
pub struct Requests {
    messages: Vec<Prepared>,
    compression: Option<Compression>,
    /// `Some(seed)`: `data_order = "random"`; `None`: round-robin.
    random: Option<u64>,
}

/// SplitMix64's finaliser: a well-mixed 64-bit value of `x`, so that consecutive request
/// numbers pick unrelated messages.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Per-worker state for rendering requests: the worker's id and random generator. (Its
/// scratch buffers are the thread's, `SCRATCH`: a worker's state is kept for every open
/// stream, and two buffers in each were 48 bytes of it, and their capacity, per stream.)
#[derive(Debug)]
pub struct Renderer {
    /// The worker it renders for (`{{worker_id}}`).
    pub worker_id: usize,
    rng: LazyRng,
}

impl Renderer {
    /// A renderer for `worker_id`.
    pub fn new(worker_id: usize) -> Self {
        Self {
            worker_id,
            rng: LazyRng(None),
        }
    }
}

/// Where a templated message is rendered (a field's text) and encoded: reused by every
/// worker of the thread, one render at a time (rendering never awaits).
#[derive(Default)]
struct Scratch {
    text: String,
    buf: Vec<u8>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// A random generator seeded from the OS at its first draw. `StdRng` (ChaCha12 and its
/// block buffer) is ~330 bytes, and every worker has a renderer — every open stream, 3.3 MB
/// at 10,000 — while only templates with random helpers draw from it.
#[derive(Debug)]
struct LazyRng(Option<Box<rand::rngs::StdRng>>);

impl LazyRng {
    fn get(&mut self) -> &mut rand::rngs::StdRng {
        self.0.get_or_insert_with(|| {
            Box::new(<rand::rngs::StdRng as rand::SeedableRng>::from_os_rng())
        })
    }
}

impl rand::RngCore for LazyRng {
    fn next_u32(&mut self) -> u32 {
        self.get().next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.get().next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.get().fill_bytes(dst);
    }
}

impl Renderer {
    /// Renders `template` for request `number` into `out` (cleared first).
    pub fn render(&mut self, template: &Template, number: u64, out: &mut String) {
        template.render(
            &mut Context {
                request_number: number,
                worker_id: self.worker_id,
                rng: &mut self.rng,
            },
            out,
        );
    }
}

impl Requests {
    /// Builds the run's requests from the scenario, reporting every message that does not
    /// fit the method's input type, with where it was written.
    pub fn build(call: &Call, method: &MethodDescriptor) -> Result<Self, Problems> {
        let mut requests = Self::from_messages(&call.messages, call.compression, method)?;
        requests.random = match call.data_order {
            DataOrder::RoundRobin => None,
            DataOrder::Random { seed } => Some(seed.unwrap_or_else(rand::random)),
        };
        Ok(requests)
    }

    /// The requests `messages` make for `method` (a scenario's call, or a probe's `data`).
    pub fn from_messages(
        written: &[RequestMessage],
        compression: Option<Compression>,
        method: &MethodDescriptor,
    ) -> Result<Self, Problems> {
        let mut messages = Vec::new();
        let mut problems: Vec<(std::path::PathBuf, Problem)> = Vec::new();
        for msg in written {
            match prepare(msg, method, compression) {
                Ok(p) => messages.push(p),
                Err(p) => problems.push((msg.file.clone(), p)),
            }
        }
        if let Some((path, _)) = problems.first() {
            let path = path.clone();
            return Err(Problems {
                path,
                list: problems.into_iter().map(|(_, p)| p).collect(),
            });
        }
        Ok(Self {
            messages,
            compression,
            random: None,
        })
    }

    /// No request at all (a handshake storm without a call).
    pub fn none() -> Self {
        Self {
            messages: Vec::new(),
            compression: None,
            random: None,
        }
    }

    /// Whether requests differ by request number (lists and templates), so the caller must
    /// number them.
    pub fn varies(&self) -> bool {
        self.messages.len() > 1 || self.messages.iter().any(|m| !m.fields.is_empty())
    }

    /// The encoded message of request `n`, without the gRPC frame: for clients that frame
    /// it themselves (tonic). Uncompressed requests only — probes never compress.
    pub fn unframed(&self, n: u64, r: &mut Renderer) -> Option<Bytes> {
        if self.compression.is_some() {
            return None;
        }
        let framed = self.body(n, r);
        (framed.len() >= 5).then(|| framed.slice(5..))
    }

    /// The framed body of request `n`.
    pub fn body(&self, n: u64, r: &mut Renderer) -> Bytes {
        self.message(n, n, r)
    }

    /// Message `index` of the list (cycled; with `data_order = "random"`, a pick that is a
    /// function of the seed, `number` and `index`), with templates rendered for request
    /// `number` (a stream's messages are the list in order; its templates see the stream's
    /// number).
    pub fn message(&self, index: u64, number: u64, r: &mut Renderer) -> Bytes {
        if self.messages.is_empty() {
            return Bytes::new();
        }
        let n = number;
        let len = self.messages.len() as u64;
        let pick = match self.random {
            None => index % len,
            Some(seed) => mix(seed ^ mix(number) ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93)) % len,
        };
        let msg = &self.messages[pick as usize];
        if let Some(frame) = &msg.frame {
            return frame.clone();
        }
        let mut m = msg.base.clone();
        SCRATCH.with_borrow_mut(|Scratch { text, buf }| {
            for f in &msg.fields {
                let mut ctx = Context {
                    request_number: n,
                    worker_id: r.worker_id,
                    rng: &mut r.rng,
                };
                f.template.render(&mut ctx, text);
                if let Ok(v) = convert(text, &f.kind) {
                    set(&mut m, &f.steps, v);
                }
            }
            buf.clear();
            if self.compression.is_some() {
                // Encoding into a Vec cannot fail; framing only fails past 4 GiB.
                let _ = m.encode(buf);
                return frame(buf, self.compression).unwrap_or_default();
            }
            // Uncompressed: encode after a 5-byte prefix and fill its length in, so the
            // request is copied once (into the returned Bytes) instead of three times.
            buf.extend_from_slice(&[0; 5]);
            let _ = m.encode(buf);
            let Ok(len) = u32::try_from(buf.len() - 5) else {
                return Bytes::new();
            };
            buf[1..5].copy_from_slice(&len.to_be_bytes());
            Bytes::copy_from_slice(buf)
        })
    }
}

/// Converts a rendered template to a field's value.
fn convert(text: &str, kind: &Kind) -> Result<Value, String> {
    let num = |what: &str| format!("\"{text}\" is not {what}");
    Ok(match kind {
        Kind::String => Value::String(text.to_string()),
        Kind::Bytes => Value::Bytes(Bytes::copy_from_slice(text.as_bytes())),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(text.parse().map_err(|_| num("a 32-bit integer"))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(text.parse().map_err(|_| num("a 64-bit integer"))?)
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(
            text.parse()
                .map_err(|_| num("an unsigned 32-bit integer"))?,
        ),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(
            text.parse()
                .map_err(|_| num("an unsigned 64-bit integer"))?,
        ),
        Kind::Float => Value::F32(text.parse().map_err(|_| num("a number"))?),
        Kind::Double => Value::F64(text.parse().map_err(|_| num("a number"))?),
        Kind::Bool => Value::Bool(text.parse().map_err(|_| num("true or false"))?),
        Kind::Enum(e) => Value::EnumNumber(
            e.get_value_by_name(text)
                .map(|v| v.number())
                .ok_or_else(|| num(&format!("a value of {}", e.full_name())))?,
        ),
        Kind::Message(m) => {
            return Err(format!(
                "a template cannot fill the message field of type {}",
                m.full_name()
            ))
        }
    })
}

fn set(msg: &mut DynamicMessage, steps: &[Step], value: Value) {
    let Some(Step::Field(f)) = steps.first() else {
        return;
    };
    match &steps[1..] {
        [] => msg.set_field(f, value),
        [Step::Index(i), rest @ ..] => {
            if let Value::List(list) = msg.get_field_mut(f) {
                match (list.get_mut(*i), rest.is_empty()) {
                    (Some(slot), true) => *slot = value,
                    (Some(Value::Message(inner)), false) => set(inner, rest, value),
                    _ => {}
                }
            }
        }
        rest => {
            if let Value::Message(inner) = msg.get_field_mut(f) {
                set(inner, rest, value);
            }
        }
    }
}

/// A template found in a message's JSON: where (object keys and list indexes) and what.
struct Found {
    path: Vec<serde_json::Value>,
    template: Template,
}

/// Bytes the templates of one message may render, together: gRPC's default message limit
/// (servers refuse larger messages). Checked before any rendering, so no file can make a
/// run, `validate`, a probe or the agent build requests without bound.
pub const MAX_TEMPLATED_BYTES: usize = 4 << 20;

/// Finds templates in string values, replacing each with a sample rendering so the whole
/// message can be checked against its type once. `budget` is what the message's templates
/// may still render; a template past it is an error, not rendered.
fn find_templates(
    v: &mut serde_json::Value,
    path: &mut Vec<serde_json::Value>,
    out: &mut Vec<Found>,
    errors: &mut Vec<(String, String)>,
    budget: &mut usize,
) {
    use serde_json::Value as J;
    if !errors.is_empty() {
        return;
    }
    match v {
        J::String(s) => match Template::parse(s) {
            Ok(Some(template)) if template.max_len() > *budget => errors.push((
                json_path(path),
                format!(
                    "the message's templates render up to more than {MAX_TEMPLATED_BYTES} bytes with this one (a message's templates render at most that, gRPC's default message size limit): use fewer or shorter templates"
                ),
            )),
            Ok(Some(template)) => {
                *budget -= template.max_len();
                let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
                let mut sample = String::new();
                template.render(
                    &mut Context {
                        request_number: 0,
                        worker_id: 0,
                        rng: &mut rng,
                    },
                    &mut sample,
                );
                *s = sample;
                out.push(Found {
                    path: path.clone(),
                    template,
                });
            }
            Ok(None) => {}
            Err(e) => errors.push((json_path(path), e)),
        },
        J::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(J::from(i));
                find_templates(item, path, out, errors, budget);
                path.pop();
            }
        }
        J::Object(map) => {
            for (k, item) in map.iter_mut() {
                path.push(J::from(k.clone()));
                find_templates(item, path, out, errors, budget);
                path.pop();
            }
        }
        _ => {}
    }
}

fn json_path(path: &[serde_json::Value]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            serde_json::Value::String(k) => {
                s.push('.');
                s.push_str(k);
            }
            other => s.push_str(&format!("[{other}]")),
        }
    }
    s
}

fn field_steps(
    desc: &MessageDescriptor,
    path: &[serde_json::Value],
) -> Result<(Vec<Step>, Kind), String> {
    let mut steps = Vec::new();
    let mut msg = desc.clone();
    let mut i = 0;
    loop {
        let Some(serde_json::Value::String(key)) = path.get(i) else {
            return Err("templates go in string values of message fields".into());
        };
        let field = msg
            .get_field_by_json_name(key)
            .or_else(|| msg.get_field_by_name(key))
            .ok_or_else(|| format!("no field `{key}` in {}", msg.full_name()))?;
        steps.push(Step::Field(field.clone()));
        i += 1;
        if field.is_map() {
            return Err(format!(
                "templates in map values (`{key}`) are not supported"
            ));
        }
        if field.is_list() {
            let Some(idx) = path.get(i).and_then(|v| v.as_u64()) else {
                return Err(format!("`{key}` is a list: template its items"));
            };
            steps.push(Step::Index(idx as usize));
            i += 1;
        }
        match field.kind() {
            Kind::Message(inner) if i < path.len() => msg = inner,
            kind if i == path.len() => return Ok((steps, kind)),
            _ => return Err(format!("`{key}` has no fields to template")),
        }
    }
}

fn prepare(
    msg: &RequestMessage,
    method: &MethodDescriptor,
    compression: Option<Compression>,
) -> Result<Prepared, Problem> {
    let input = method.input();
    let mut json = msg.json.clone();
    let (mut found, mut errors) = (Vec::new(), Vec::new());
    let mut budget = MAX_TEMPLATED_BYTES;
    find_templates(
        &mut json,
        &mut Vec::new(),
        &mut found,
        &mut errors,
        &mut budget,
    );
    if let Some((path, why)) = errors.into_iter().next() {
        return Err(msg.problem(&path, why));
    }
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(&json, &mut track);
    let base = match DynamicMessage::deserialize(input.clone(), de) {
        Ok(m) => m,
        Err(e) => {
            let mut path = track.path().to_string();
            let text = e.to_string();
            // An unknown field is reported at its parent; name the field itself.
            if let Some(name) = text
                .split_once("unrecognized field name '")
                .and_then(|(_, rest)| rest.split_once('\''))
                .map(|(name, _)| name)
            {
                path = if path == "." || path.is_empty() {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                };
            }
            let path = if path == "." || path.is_empty() {
                String::new()
            } else {
                format!(".{path}")
            };
            return Err(msg.problem(
                &path,
                format!(
                    "does not fit {} (the input of {}): {e}",
                    input.full_name(),
                    method.full_name()
                ),
            ));
        }
    };
    let mut fields = Vec::new();
    for f in found {
        let at = json_path(&f.path);
        let (steps, kind) = field_steps(&input, &f.path).map_err(|why| msg.problem(&at, why))?;
        // The sample rendering already fitted the JSON mapping; it must fit the field too.
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        let mut sample = String::new();
        f.template.render(
            &mut Context {
                request_number: 0,
                worker_id: 0,
                rng: &mut rng,
            },
            &mut sample,
        );
        convert(&sample, &kind).map_err(|why| {
            msg.problem(
                &at,
                format!("the template's output does not fit the field: {why}"),
            )
        })?;
        fields.push(TemplatedField {
            steps,
            kind,
            template: f.template,
        });
    }
    let frame = if fields.is_empty() {
        Some(
            frame(&base.encode_to_vec(), compression)
                .map_err(|e| msg.problem("", e.to_string()))?,
        )
    } else {
        None
    };
    Ok(Prepared {
        base,
        frame,
        fields,
    })
}

impl RequestMessage {
    /// A problem at `path` inside this message (".a.b", "[0]"), pointing at the deepest key
    /// written in the file that leads there.
    fn problem(&self, path: &str, message: String) -> Problem {
        let key = format!("{}{path}", self.key);
        let loc = self
            .locs
            .iter()
            .filter(|(p, _)| {
                key == *p || key.starts_with(&format!("{p}.")) || key.starts_with(&format!("{p}["))
            })
            .max_by_key(|(p, _)| p.len())
            .map_or(Loc::default(), |(_, l)| *l);
        Problem {
            loc,
            key: if self.from_data_file {
                key
            } else {
                format!("call.{key}")
            },
            message,
        }
    }
}
