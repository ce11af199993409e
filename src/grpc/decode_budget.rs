//! A bound on what decoding a response costs before it is decoded. A 4 MiB message can hold
//! two million empty sub-messages or four million packed varints, and a `DynamicMessage`
//! spends tens of bytes on each: 120 MB for one probe's answer. Counting the values the
//! wire format holds (walking sub-messages by the descriptor, elements of packed fields
//! one by one) bounds that first, at no allocation.

use prost_reflect::{Kind, MessageDescriptor};

/// Values (fields, list elements, map entries) a probe decodes at most: a few tens of MB at
/// worst, far beyond what a health or method probe's answer needs.
pub const MAX_DECODED_VALUES: usize = 500_000;

/// Nesting followed at most (prost's own recursion limit); deeper is left to the decoder,
/// which refuses it.
const MAX_DEPTH: usize = 100;

/// `Err` names the bound when `bytes`, read as `message`, holds more than `budget` values.
/// Malformed input is not judged here: the decoder says what is wrong with it.
pub fn within(bytes: &[u8], message: &MessageDescriptor, budget: usize) -> Result<(), String> {
    let mut left = budget;
    match count(bytes, Some(message), &mut left, 0) {
        Some(()) => Ok(()),
        None if left == 0 => Err(format!(
            "the response holds more than {budget} fields and elements: not decoded (a probe decodes at most that many)"
        )),
        None => Ok(()),
    }
}

/// Spends one unit of `left` per value; `None` when the budget ran out, or the bytes are
/// not well formed (then `left` is not 0).
fn count(
    mut bytes: &[u8],
    message: Option<&MessageDescriptor>,
    left: &mut usize,
    depth: usize,
) -> Option<()> {
    while !bytes.is_empty() {
        let tag = varint(&mut bytes)?;
        let (number, wire) = (tag >> 3, tag & 7);
        spend(left, 1)?;
        match wire {
            0 => {
                varint(&mut bytes)?;
            }
            1 => bytes = bytes.get(8..)?,
            5 => bytes = bytes.get(4..)?,
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                let payload = bytes.get(..len)?;
                bytes = &bytes[len..];
                let field =
                    message.and_then(|m| u32::try_from(number).ok().and_then(|n| m.get_field(n)));
                let Some(field) = field else { continue };
                match field.kind() {
                    Kind::Message(sub) if depth < MAX_DEPTH => {
                        count(payload, Some(&sub), left, depth + 1)?;
                    }
                    Kind::String | Kind::Bytes | Kind::Message(_) => {}
                    // A packed list: every element is a value.
                    Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => spend(left, len / 8)?,
                    Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => spend(left, len / 4)?,
                    _ => spend(left, payload.iter().filter(|&&b| b < 0x80).count())?,
                }
            }
            // Groups (proto2, deprecated) and anything else: the decoder judges them.
            _ => return Some(()),
        }
    }
    Some(())
}

fn spend(left: &mut usize, n: usize) -> Option<()> {
    if n > *left {
        *left = 0;
        return None;
    }
    *left -= n;
    Some(())
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let b = *bytes.get(i)?;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::DynamicMessage;

    fn types() -> prost_reflect::DescriptorPool {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.proto"),
            r#"syntax = "proto3"; package t;
message Item { uint32 count = 1; }
message Reply { repeated Item items = 1; repeated int64 numbers = 2; string text = 3; }"#,
        )
        .unwrap();
        let files = protox::compile(["t.proto"], [dir.path()]).unwrap();
        prost_reflect::DescriptorPool::from_file_descriptor_set(files).unwrap()
    }

    #[test]
    fn many_empty_messages_or_packed_numbers_are_refused_before_decoding() {
        let reply = types().get_message_by_name("t.Reply").unwrap();
        // 200,000 empty Items: two bytes each on the wire.
        let items: Vec<u8> = std::iter::repeat_n([0x0a, 0x00], 200_000)
            .flatten()
            .collect();
        assert!(within(&items, &reply, 100_000).is_err());
        assert!(within(&items, &reply, 300_000).is_ok());
        // 300,000 packed one-byte numbers in one field.
        let mut packed = vec![0x12];
        let mut len = 300_000u32;
        while len >= 0x80 {
            packed.push((len as u8) | 0x80);
            len >>= 7;
        }
        packed.push(len as u8);
        packed.extend(std::iter::repeat_n(1u8, 300_000));
        let e = within(&packed, &reply, 100_000).unwrap_err();
        assert!(e.contains("more than 100000"), "{e}");
        assert!(DynamicMessage::decode(reply.clone(), packed.as_slice()).is_ok());
        // An ordinary answer passes; malformed bytes are left to the decoder.
        let small = [0x1a, 0x02, b'h', b'i'];
        assert!(within(&small, &reply, 10).is_ok());
        assert!(within(&[0x0a, 0xff], &reply, 10).is_ok());
    }
}
