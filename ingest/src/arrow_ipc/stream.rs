//! One IPC stream message read into record batches, with the key columns read as bytes.
//!
//! arrow-ipc's `StreamDecoder` reads a `Utf8` column as `Utf8`, and building a `Utf8` array
//! checks every value: the whole buffer for UTF-8, then every offset for a character boundary,
//! one at a time (about a tenth of the Arrow full path's time in the Kafka bench). The decoder
//! wants the key columns' bytes anyway (it compares them with the keys it knows), and checks
//! their UTF-8 itself, whole columns at a time with an ASCII fast path, naming the first bad row
//! as `not_utf8` like any other row check (`super::first_non_utf8`). `StreamDecoder` has no
//! setting for this (only the file and blocking readers can skip validation, and only all of it,
//! `unsafe`), so the stream is framed here, and arrow-ipc does everything else:
//!
//! - the framing of the IPC streaming format: an optional continuation marker (`0xFFFFFFFF`),
//!   the metadata length (little endian; 0 ends the stream, and nothing may follow), the
//!   flatbuffer `Message` (verified by arrow-ipc's `MessageBuffer::try_new`), then its body of
//!   `bodyLength` bytes, exactly as `StreamDecoder` walks it;
//! - the schema message is parsed by arrow-ipc's `fb_to_schema`; the schema the batches are
//!   read with has the `cluster`, `service` and `region` fields of type `Utf8` turned into
//!   `Binary` (the same buffers: validity, offsets, bytes), so arrow still checks the offsets
//!   (in bounds, never decreasing) and the lengths, but not the UTF-8;
//! - record batches and dictionary batches are read by `arrow_ipc::reader::read_record_batch`
//!   and `read_dictionary`, zero-copy slices of the message (unaligned buffers are copied).
//!
//! No `unsafe` is involved: every array is built by arrow's checked constructors. The schema as
//! sent is kept ([`Stream::wire`]), so a key column the producer sent as anything but `Utf8`
//! (`Binary` included) is still `wrong_type`.
//!
//! One producer sends the same schema message message after message. [`SchemaCache`] keeps the
//! last one's metadata bytes with both schemas parsed from them; a schema message with the same
//! bytes reuses them (same bytes, same verification outcome, same schema), skipping the
//! flatbuffer verification and the parse (their allocations) per message.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::Buffer;
use arrow_ipc::convert::MessageBuffer;
use arrow_ipc::MessageHeader;
use arrow_schema::{ArrowError, DataType, Schema, SchemaRef};

use super::{CLUSTER, REGION, SERVICE};

/// Marks a metadata length in the current streaming format (the legacy one has none).
const CONTINUATION: u32 = 0xFFFF_FFFF;

/// The batches of one message, as read for decoding.
#[derive(Debug)]
pub(crate) struct Stream {
    /// The schema as the producer sent it.
    pub(crate) wire: SchemaRef,
    /// Every record batch, in [`read_schema`] form (key columns of type `Utf8` as `Binary`).
    pub(crate) batches: Vec<RecordBatch>,
}

/// The schema message last read, see the module docs.
#[derive(Debug, Default)]
pub(crate) struct SchemaCache {
    last: Option<Schemas>,
}

#[derive(Debug)]
struct Schemas {
    /// The flatbuffer metadata of the schema message.
    meta: Vec<u8>,
    /// Its `bodyLength`.
    body: usize,
    wire: SchemaRef,
    read: SchemaRef,
}

/// The schema batches are read with: `wire` with its `Utf8` key columns as `Binary`.
pub(crate) fn read_schema(wire: &SchemaRef) -> SchemaRef {
    let is_key = |name: &str| [CLUSTER, SERVICE, REGION].contains(&name);
    let turned = |f: &arrow_schema::Field| is_key(f.name()) && f.data_type() == &DataType::Utf8;
    if !wire.fields().iter().any(|f| turned(f)) {
        return wire.clone();
    }
    let fields: Vec<arrow_schema::Field> = wire
        .fields()
        .iter()
        .map(|f| {
            let f = f.as_ref().clone();
            if turned(&f) {
                f.with_data_type(DataType::Binary)
            } else {
                f
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, wire.metadata().clone()))
}

fn ipc(what: &str) -> ArrowError {
    ArrowError::IpcError(what.to_owned())
}

/// The little-endian u32 at `at`, if the message has 4 bytes there.
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    let mut w = [0u8; 4];
    w.copy_from_slice(b);
    Some(u32::from_le_bytes(w))
}

/// Reads one complete IPC stream (see the module docs). Errors are arrow's, or say where the
/// framing broke; a stream without a schema message is an error.
pub(crate) fn read(msg: &Buffer, cache: &mut SchemaCache) -> Result<Stream, ArrowError> {
    let bytes = msg.as_slice();
    let cut_short = || ipc("Unexpected End of Stream");
    let mut at = 0usize;
    let mut schemas: Option<(SchemaRef, SchemaRef)> = None;
    let mut dictionaries: HashMap<i64, ArrayRef> = HashMap::new();
    let mut batches = Vec::new();
    while at < bytes.len() {
        let mut size = u32_at(bytes, at).ok_or_else(cut_short)?;
        at += 4;
        if size == CONTINUATION {
            size = u32_at(bytes, at).ok_or_else(cut_short)?;
            at += 4;
        }
        if size == 0 {
            // End of stream.
            if at < bytes.len() {
                return Err(ipc("Unexpected EOS"));
            }
            break;
        }
        let size = size as usize;
        let meta = bytes.get(at..at + size).ok_or_else(cut_short)?;
        // The same schema message as last time: the same schemas.
        if let (None, Some(last)) = (&schemas, &cache.last) {
            if last.meta.as_slice() == meta {
                at += size;
                if bytes.len() - at < last.body {
                    return Err(cut_short());
                }
                at += last.body;
                schemas = Some((last.wire.clone(), last.read.clone()));
                continue;
            }
        }
        let message = MessageBuffer::try_new(msg.slice_with_length(at, size))?;
        at += size;
        let message = message.as_ref();
        let body_len = usize::try_from(message.bodyLength())
            .map_err(|_| ipc("negative message body length"))?;
        if bytes.len() - at < body_len {
            return Err(cut_short());
        }
        let body = msg.slice_with_length(at, body_len);
        at += body_len;
        let version = message.version();
        match message.header_type() {
            MessageHeader::Schema => {
                if schemas.is_some() {
                    return Err(ipc("Not expecting a schema when messages are read"));
                }
                let fb = message
                    .header_as_schema()
                    .ok_or_else(|| ipc("Unable to read IPC message as schema"))?;
                let wire: SchemaRef = Arc::new(arrow_ipc::convert::fb_to_schema(fb));
                let read = read_schema(&wire);
                cache.last = Some(Schemas {
                    meta: meta.to_vec(),
                    body: body_len,
                    wire: wire.clone(),
                    read: read.clone(),
                });
                schemas = Some((wire, read));
            }
            MessageHeader::RecordBatch => {
                let (_, read) = schemas.as_ref().ok_or_else(|| ipc("Missing schema"))?;
                let batch = message
                    .header_as_record_batch()
                    .ok_or_else(|| ipc("Unable to read IPC message as record batch"))?;
                batches.push(arrow_ipc::reader::read_record_batch(
                    &body,
                    batch,
                    read.clone(),
                    &dictionaries,
                    None,
                    &version,
                )?);
            }
            MessageHeader::DictionaryBatch => {
                let (_, read) = schemas.as_ref().ok_or_else(|| ipc("Missing schema"))?;
                let dict = message
                    .header_as_dictionary_batch()
                    .ok_or_else(|| ipc("Unable to read IPC message as dictionary batch"))?;
                arrow_ipc::reader::read_dictionary(&body, dict, read, &mut dictionaries, &version)?;
            }
            MessageHeader::NONE => {}
            other => {
                return Err(ArrowError::IpcError(format!(
                    "Message type unsupported by StreamDecoder: {other:?}"
                )))
            }
        }
    }
    let (wire, _) = schemas.ok_or_else(|| ipc("no schema message"))?;
    Ok(Stream { wire, batches })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::Int32Type;
    use arrow_array::{Array, BinaryArray, DictionaryArray, Int32Array, StringArray};
    use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};

    /// What arrow-ipc's own `StreamDecoder` makes of the message.
    fn arrows(msg: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>), ArrowError> {
        let mut buf = Buffer::from_slice_ref(msg);
        let mut dec = arrow_ipc::reader::StreamDecoder::new();
        let mut batches = Vec::new();
        while !buf.is_empty() {
            if let Some(b) = dec.decode(&mut buf)? {
                batches.push(b);
            }
        }
        dec.finish()?;
        let schema = dec.schema().ok_or_else(|| ipc("no schema message"))?;
        Ok((schema, batches))
    }

    /// Ours, with the key columns turned back to `Utf8` for comparing.
    fn ours(
        msg: &[u8],
        cache: &mut SchemaCache,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), ArrowError> {
        let s = read(&Buffer::from_slice_ref(msg), cache)?;
        let batches = s
            .batches
            .iter()
            .map(|b| {
                let cols = b
                    .columns()
                    .iter()
                    .zip(s.wire.fields())
                    .map(|(c, f)| match (c.data_type(), f.data_type()) {
                        (DataType::Binary, DataType::Utf8) => {
                            let bin: &BinaryArray = c.as_any().downcast_ref().unwrap();
                            let strings = StringArray::try_from_binary(bin.clone()).unwrap();
                            Arc::new(strings) as ArrayRef
                        }
                        _ => c.clone(),
                    })
                    .collect();
                RecordBatch::try_new(s.wire.clone(), cols).unwrap()
            })
            .collect();
        Ok((s.wire, batches))
    }

    fn stream(batches: &[RecordBatch], legacy: bool, eos: bool) -> Vec<u8> {
        let opts = if legacy {
            IpcWriteOptions::try_new(8, true, arrow_ipc::MetadataVersion::V4).unwrap()
        } else {
            IpcWriteOptions::default()
        };
        let mut w =
            StreamWriter::try_new_with_options(Vec::new(), &batches[0].schema(), opts).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        if eos {
            w.finish().unwrap();
        }
        w.into_inner().unwrap()
    }

    fn keyed(clusters: &[&str]) -> RecordBatch {
        let n = clusters.len() as i32;
        RecordBatch::try_from_iter(vec![
            (
                "cluster",
                Arc::new(StringArray::from(clusters.to_vec())) as ArrayRef,
            ),
            (
                "other",
                Arc::new(StringArray::from(clusters.to_vec())) as ArrayRef,
            ),
            (
                "n",
                Arc::new(Int32Array::from_iter_values(0..n)) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn reads_what_arrows_stream_decoder_reads() {
        let a = keyed(&["c1", "c2", "zürich"]);
        let b = keyed(&["c3"]);
        let dict: DictionaryArray<Int32Type> = vec!["x", "y", "x"].into_iter().collect();
        let with_dict = RecordBatch::try_from_iter(vec![
            ("region", Arc::new(dict) as ArrayRef),
            (
                "service",
                Arc::new(StringArray::from(vec!["s", "t", "u"])) as ArrayRef,
            ),
        ])
        .unwrap();
        let good = stream(&[a.clone(), b.clone()], false, true);
        let mut truncated_header = stream(std::slice::from_ref(&a), false, false);
        truncated_header.extend_from_slice(&[0xff, 0xff]);
        // (name, message)
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("two batches", good.clone()),
            (
                "no end-of-stream marker",
                stream(std::slice::from_ref(&a), false, false),
            ),
            (
                "legacy framing",
                stream(&[a.clone(), b.clone()], true, true),
            ),
            ("dictionary column", stream(&[with_dict], false, true)),
            ("empty", Vec::new()),
            ("cut in the body", good[..good.len() - 20].to_vec()),
            ("cut in a header", truncated_header),
            (
                "bytes after the end marker",
                [good.clone(), vec![1, 2, 3, 4]].concat(),
            ),
            ("garbage", b"{\"ts\":1}".to_vec()),
            (
                "a second schema",
                [
                    stream(std::slice::from_ref(&a), false, false),
                    stream(&[b], false, true),
                ]
                .concat(),
            ),
        ];
        for (name, msg) in cases {
            let want = arrows(&msg);
            // Twice with one cache: the second read reuses the schema.
            let mut cache = SchemaCache::default();
            for pass in 0..2 {
                let got = ours(&msg, &mut cache);
                match (&got, &want) {
                    (Ok(g), Ok(w)) => assert_eq!(g, w, "case {name:?} pass {pass}"),
                    (Err(_), Err(_)) => {}
                    _ => panic!("case {name:?} pass {pass}: ours {got:?}, arrow's {want:?}"),
                }
            }
        }
    }

    #[test]
    fn key_columns_are_read_as_bytes_and_their_types_kept_as_sent() {
        let batch = keyed(&["a", "b"]);
        let mut cache = SchemaCache::default();
        let s = read(&Buffer::from_vec(stream(&[batch], false, true)), &mut cache).unwrap();
        let b = &s.batches[0];
        // `cluster` is a key column: bytes; `other` is not: still a string column.
        assert_eq!(b.column(0).data_type(), &DataType::Binary);
        assert_eq!(b.column(1).data_type(), &DataType::Utf8);
        assert_eq!(s.wire.field(0).data_type(), &DataType::Utf8);
        // A key column sent as bytes stays bytes on the wire schema too (so it is wrong_type).
        let sent_binary = RecordBatch::try_from_iter(vec![(
            "service",
            Arc::new(BinaryArray::from_iter_values([b"s"])) as ArrayRef,
        )])
        .unwrap();
        let s = read(
            &Buffer::from_vec(stream(&[sent_binary], false, true)),
            &mut cache,
        )
        .unwrap();
        assert_eq!(s.wire.field(0).data_type(), &DataType::Binary);
    }
}
