//! Finds a method's descriptor from the scenario's schema source, checks the method's
//! shape against the scenario's kind, and encodes the request message from its JSON form.

use std::path::Path;
use std::time::Duration;

use prost::Message;
use prost_reflect::{DescriptorPool, MethodDescriptor};

use super::reflection::{self, ReflectionError};
use crate::vocabulary::problems::{Problem, Problems};
use crate::vocabulary::{Call, Kind, Loc, MethodName, Scenario, Schema};

/// Why a scenario's method could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The scenario is wrong: exit 2.
    #[error("{0}")]
    Invalid(Problems),
    /// The target could not be reached to ask it by reflection: exit 1.
    #[error("{0}")]
    Unreachable(String),
}

/// A resolved method: its descriptor and where the types came from.
#[derive(Debug, Clone)]
pub struct ResolvedMethod {
    /// The method.
    pub descriptor: MethodDescriptor,
    /// Where its types came from, in words.
    pub schema_source: String,
}

/// Resolves the scenario's method. `address` is the target's `host:port`, used only when
/// the types come from server reflection.
pub async fn resolve(
    scenario: &Scenario,
    call: &Call,
    address: &crate::vocabulary::HostPort,
    tls: Option<&crate::tls::ClientTls>,
) -> Result<ResolvedMethod, ResolveError> {
    let invalid = |loc: Loc, key: &str, message: String| {
        ResolveError::Invalid(Problems {
            path: scenario.path.clone(),
            list: vec![Problem {
                loc,
                key: key.to_string(),
                message,
            }],
        })
    };
    let (pool, schema_source) = match pool_from_files(&call.schema) {
        Some(Ok(found)) => found,
        Some(Err(e)) => return Err(invalid(e.loc, &format!("call.{}", e.key), e.message)),
        None if scenario.target.protocol.is_web() => {
            // Reflection is a native gRPC stream: ask for it natively (a proxy may pass it
            // through), and say what to do when the gRPC-Web endpoint does not answer it.
            let through_web = |e: String| {
                invalid(
                    call.method.loc,
                    "call.method",
                    format!("types by server reflection failed through the gRPC-Web endpoint: {e}; reflection is a native gRPC stream, which gRPC-Web cannot carry and gRPC-Web servers rarely serve: give the method's types with `proto = [\"file.proto\"]` or `protoset = \"file.protoset\"` in [call]"),
                )
            };
            let pool = pool_by_reflection(
                address,
                &call.method.value.service,
                scenario.target.connect_timeout.max(Duration::from_secs(1)),
                tls,
            )
            .await
            .map_err(through_web)?;
            (pool, "server reflection (native gRPC)".to_string())
        }
        None => {
            // Prove the target speaks HTTP/2 the way the load will connect, so a target that
            // does not fails here with the load's own message (exit 1), not as a problem with
            // `call.method`.
            let endpoint = crate::grpc::channel::Endpoint {
                address: address.clone(),
                connect_timeout: scenario.target.connect_timeout.max(Duration::from_secs(1)),
                tls: tls.cloned(),
            };
            crate::grpc::channel::connect(&endpoint)
                .await
                .map_err(|e| ResolveError::Unreachable(e.first_contact().to_string()))?;
            let (set, version) = reflection::fetch_service_files(
                address,
                scenario.target.authority.as_deref(),
                &call.method.value.service,
                scenario.target.connect_timeout.max(Duration::from_secs(1)),
                tls,
            )
            .await
            .map_err(|e| match e {
                ReflectionError::Connect { .. } => ResolveError::Unreachable(format!(
                    "{e}; is the target running, and is the address right?"
                )),
                ReflectionError::UnknownService { .. } => invalid(
                    call.method.loc,
                    "call.method",
                    format!("{e}; check the service name"),
                ),
                _ => invalid(
                    call.method.loc,
                    "call.method",
                    format!("{e}; give the method's types with `proto = [\"file.proto\"]` or `protoset = \"file.protoset\"` in [call]"),
                ),
            })?;
            let pool = DescriptorPool::from_file_descriptor_set(set).map_err(|e| {
                invalid(call.method.loc, "call.method", format!("the descriptors the server sent by reflection do not form a valid set: {e}"))
            })?;
            (pool, format!("server reflection ({version})"))
        }
    };
    let descriptor = find_method(&pool, &call.method.value)
        .map_err(|m| invalid(call.method.loc, "call.method", m))?;
    check_shape(scenario.kind, &descriptor)
        .map_err(|m| invalid(call.method.loc, "call.method", m))?;
    Ok(ResolvedMethod {
        descriptor,
        schema_source,
    })
}

/// Why the types named by files could not be read: the key (`proto` or `protoset`), where it
/// was written, and the reason.
#[derive(Debug, Clone)]
pub struct SchemaError {
    /// `proto` or `protoset`.
    pub key: &'static str,
    /// Where it was written.
    pub loc: Loc,
    /// Why the types could not be read.
    pub message: String,
}

/// The types of a schema given by files (proto files or a protoset), with a description of
/// where they came from; `None` for reflection, which needs the target.
pub fn pool_from_files(schema: &Schema) -> Option<Result<(DescriptorPool, String), SchemaError>> {
    match schema {
        Schema::Protos {
            files,
            import_paths,
        } => Some(
            compile_protos(files.iter().map(|f| f.value.as_path()), import_paths)
                .map(|pool| (pool, "proto files".to_string()))
                .map_err(|message| SchemaError {
                    key: "proto",
                    loc: files.first().map_or_else(Loc::default, |f| f.loc),
                    message,
                }),
        ),
        Schema::Protoset(path) => Some(
            load_protoset(&path.value)
                .map(|pool| (pool, format!("protoset {}", path.value.display())))
                .map_err(|message| SchemaError {
                    key: "protoset",
                    loc: path.loc,
                    message,
                }),
        ),
        Schema::Reflection => None,
    }
}

/// The types of `service` asked of the target by server reflection, for a probe: the reason
/// says what to write instead when the target does not offer reflection.
pub async fn pool_by_reflection(
    address: &crate::vocabulary::HostPort,
    service: &str,
    timeout: Duration,
    tls: Option<&crate::tls::ClientTls>,
) -> Result<DescriptorPool, String> {
    let (set, _) = reflection::fetch_service_files(address, None, service, timeout, tls)
        .await
        .map_err(|e| match e {
            ReflectionError::Connect { .. } => e.to_string(),
            _ => format!("{e}; give the method's types with proto files or a protoset"),
        })?;
    DescriptorPool::from_file_descriptor_set(set).map_err(|e| {
        format!("the descriptors the server sent by reflection do not form a valid set: {e}")
    })
}

fn compile_protos<'a>(
    files: impl Iterator<Item = &'a Path> + Clone,
    import_paths: &[std::path::PathBuf],
) -> Result<DescriptorPool, String> {
    for f in files.clone() {
        if std::fs::symlink_metadata(f).is_err() {
            return Err(format!(
                "proto file {} does not exist (a relative path is read from the folder of the file that names it)",
                f.display()
            ));
        }
    }
    // Without import paths, each file's own folder is one, so a lone .proto just works.
    let mut includes: Vec<std::path::PathBuf> = import_paths.to_vec();
    if includes.is_empty() {
        for f in files.clone() {
            let dir = f.parent().map(Path::to_path_buf).unwrap_or_default();
            let dir = if dir.as_os_str().is_empty() {
                ".".into()
            } else {
                dir
            };
            if !includes.contains(&dir) {
                includes.push(dir);
            }
        }
    }
    let mut compiler = protox::Compiler::with_file_resolver(BoundedIncludes::new(includes));
    compiler.include_imports(true);
    for f in files {
        compiler
            .open_file(f)
            .map_err(|e| format!("cannot compile {}: {e}", f.display()))?;
    }
    Ok(compiler.descriptor_pool())
}

/// protox's include-path resolver, but every file is read through [`crate::input`]: a
/// regular file under the proto cap (protox alone reads up to 2 GiB, from devices too).
struct BoundedIncludes {
    includes: Vec<std::path::PathBuf>,
    names: protox::file::ChainFileResolver,
    google: protox::file::GoogleFileResolver,
}

impl BoundedIncludes {
    fn new(includes: Vec<std::path::PathBuf>) -> Self {
        let mut names = protox::file::ChainFileResolver::new();
        for dir in &includes {
            names.add(protox::file::IncludeFileResolver::new(dir.clone()));
        }
        Self {
            includes,
            names,
            google: protox::file::GoogleFileResolver::new(),
        }
    }
}

impl protox::file::FileResolver for BoundedIncludes {
    fn resolve_path(&self, path: &Path) -> Option<String> {
        self.names.resolve_path(path)
    }

    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        for dir in &self.includes {
            let path = dir.join(name);
            if std::fs::symlink_metadata(&path).is_err() {
                continue;
            }
            let text = crate::input::read_text(&path, crate::input::FileKind::Proto)
                .map_err(protox::Error::new)?;
            return protox::file::File::from_source(name, &text);
        }
        self.google.open_file(name)
    }
}

fn load_protoset(path: &Path) -> Result<DescriptorPool, String> {
    let bytes = crate::input::read_bytes(path, crate::input::FileKind::Protoset).map_err(|e| {
        format!("{e} (a relative path is read from the folder of the file that names it)")
    })?;
    let set = prost_types::FileDescriptorSet::decode(bytes.as_slice()).map_err(|e| {
        format!("{} is not a protoset (a serialized FileDescriptorSet, as `protoc --include_imports -o FILE` writes): {e}", path.display())
    })?;
    DescriptorPool::from_file_descriptor_set(set).map_err(|e| {
        format!(
            "{} is not a complete descriptor set: {e}; write it with `protoc --include_imports -o`",
            path.display()
        )
    })
}

/// The method `name` in `pool`, or a reason that lists what the pool has.
pub fn find_method(pool: &DescriptorPool, name: &MethodName) -> Result<MethodDescriptor, String> {
    let Some(service) = pool.get_service_by_name(&name.service) else {
        let mut known: Vec<String> = pool.services().map(|s| s.full_name().to_string()).collect();
        known.sort();
        return Err(format!(
            "no service `{}`; services defined: {}",
            name.service,
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ));
    };
    let found = service.methods().find(|m| m.name() == name.method);
    found.ok_or_else(|| {
        let methods: Vec<String> = service.methods().map(|m| m.name().to_string()).collect();
        format!(
            "service `{}` has no method `{}`; its methods: {}",
            name.service,
            name.method,
            methods.join(", ")
        )
    })
}

/// The shape of a method, as a scenario's `kind` names it.
pub fn shape(method: &MethodDescriptor) -> &'static str {
    match (method.is_client_streaming(), method.is_server_streaming()) {
        (false, false) => "unary",
        (false, true) => "server_stream",
        (true, false) => "client_stream",
        (true, true) => "bidi_stream",
    }
}

fn check_shape(kind: Kind, method: &MethodDescriptor) -> Result<(), String> {
    let real = shape(method);
    if real == kind.method_shape() {
        Ok(())
    } else {
        Err(format!(
            "`{}` is a {real} method, but the scenario's kind is \"{}\"; set `kind = \"{real}\"` or choose a {} method",
            method.full_name(),
            kind.as_str(),
            kind.as_str()
        ))
    }
}
