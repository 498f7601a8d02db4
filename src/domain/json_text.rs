//! Long strings into JSON, with less work than `serde_json`'s serializer does for them.
//!
//! `serde_json` looks up every byte of a string in its escape table, about nine instructions a
//! byte: for the benchmark's 4 KB text that was 9 % of the server's instructions (callgrind), and
//! an attachment's base64 (which never needs escaping) costs the same per byte. Here eight bytes
//! at a time are checked for the few that need escaping, the runs between them are copied whole,
//! and the result — the very bytes `serde_json` writes, which the tests hold equal — goes into the
//! document as a raw value.

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// Shorter strings go through `serde_json` as they are: for them the raw value's allocation
/// costs more than the scan saves.
const LONG: usize = 256;

/// For `#[serde(serialize_with = "…")]` on a `String`.
pub fn serialize<S: Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    if value.len() < LONG {
        return s.serialize_str(value);
    }
    let raw = RawValue::from_string(escaped(value)).map_err(serde::ser::Error::custom)?;
    raw.serialize(s)
}

/// For `#[serde(serialize_with = "…")]` on an `Option<String>`.
pub fn serialize_option<S: Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => serialize(v, s),
        None => s.serialize_none(),
    }
}

/// `value` as a JSON string, quotes included, byte for byte as `serde_json` writes it.
pub fn escaped(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 16 + 2);
    out.push('"');
    let mut run = 0; // where the bytes not yet copied begin
    let (blocks, _) = bytes.as_chunks::<16>();
    for (k, block) in blocks.iter().enumerate() {
        // Written without branches so that the compiler checks the sixteen bytes at once.
        let any = block.iter().fold(false, |any, &b| {
            any | (b < 0x20) | (b == b'"') | (b == b'\\')
        });
        if !any {
            continue;
        }
        let (words, _) = block.as_chunks::<8>();
        for (w, word) in words.iter().enumerate() {
            let mut candidates = candidates(u64::from_le_bytes(*word));
            while candidates != 0 {
                let i = k * 16 + w * 8 + candidates.trailing_zeros() as usize / 8;
                run = escape_at(value, i, run, &mut out);
                candidates &= candidates - 1;
            }
        }
    }
    for i in blocks.len() * 16..bytes.len() {
        run = escape_at(value, i, run, &mut out);
    }
    out.push_str(&value[run..]);
    out.push('"');
    out
}

/// The high bit of each of the eight bytes that may be a control character (below 0x20), `"`
/// or `\`: every one that is, and possibly bytes above one that is (a borrow carries into the
/// next byte), which [`escape_at`] passes over.
fn candidates(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte below n (n ≤ 0x80) leaves its high bit set in `(x - n·ONES) & !x`; a byte equal to
    // c is a byte of `x ^ c·ONES` below one.
    let below = |x: u64, n: u64| x.wrapping_sub(n * ONES) & !x & HIGH;
    below(word, 0x20)
        | below(word ^ (b'"' as u64 * ONES), 1)
        | below(word ^ (b'\\' as u64 * ONES), 1)
}

/// Escapes byte `i` of `value` if it needs it, copying the run before it first; returns where
/// the next run begins. (Every byte that needs escaping is ASCII, so `i` is a char boundary.)
fn escape_at(value: &str, i: usize, run: usize, out: &mut String) -> usize {
    let b = value.as_bytes()[i];
    let escape = match b {
        b'"' => "\\\"",
        b'\\' => "\\\\",
        b'\n' => "\\n",
        b'\r' => "\\r",
        b'\t' => "\\t",
        0x08 => "\\b",
        0x0c => "\\f",
        0..0x20 => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str(&value[run..i]);
            out.push_str("\\u00");
            out.push(char::from(HEX[(b >> 4) as usize]));
            out.push(char::from(HEX[(b & 0xf) as usize]));
            return i + 1;
        }
        _ => return run,
    };
    out.push_str(&value[run..i]);
    out.push_str(escape);
    i + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings of every length up to 600 from characters that need escaping, that don't, and
    /// of every UTF-8 width, in a fixed pseudo-random order.
    fn samples() -> Vec<String> {
        let mut alphabet: Vec<char> = (0u8..0x20).map(char::from).collect();
        alphabet.extend(['"', '\\', '/', '\u{7f}', 'a', 'Z', ' ', 'é', 'ñ', '€', '😀']);
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..600)
            .flat_map(|len| {
                // Mostly plain text, as a message is, and sometimes every byte special.
                let dense = len % 7 == 0;
                (0..3).map(move |_| len).map(move |len| (len, dense))
            })
            .map(|(len, dense)| {
                (0..len)
                    .map(|_| {
                        let r = next();
                        if dense || r % 10 == 0 {
                            alphabet[(r >> 8) as usize % alphabet.len()]
                        } else {
                            char::from(b'a' + (r >> 8) as u8 % 26)
                        }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn escapes_byte_for_byte_as_serde_json() {
        for s in samples() {
            assert_eq!(escaped(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    #[derive(Serialize)]
    struct Fast {
        #[serde(serialize_with = "serialize")]
        text: String,
        #[serde(serialize_with = "serialize_option")]
        html: Option<String>,
    }

    #[derive(Serialize)]
    struct Plain {
        text: String,
        html: Option<String>,
    }

    #[test]
    fn a_document_is_the_same_with_and_without_it() {
        let samples = samples();
        for (text, html) in samples.iter().zip(samples.iter().rev()) {
            for html in [None, Some(html.clone())] {
                let fast = Fast {
                    text: text.clone(),
                    html: html.clone(),
                };
                let plain = Plain {
                    text: text.clone(),
                    html,
                };
                assert_eq!(
                    serde_json::to_string(&fast).unwrap(),
                    serde_json::to_string(&plain).unwrap()
                );
            }
        }
    }

    #[test]
    fn a_stored_message_reads_back_as_it_was() {
        use crate::domain::message::{Attachment, Content};
        let long = samples().pop().unwrap();
        let fields = Content::Fields {
            subject: "Factura «1» \"ok\"".into(),
            text: Some(long.clone()),
            html: Some(format!("<p>{long}</p>")),
            reply_to: None,
            headers: vec![("X-Ref".into(), "a\tb".into())],
            attachments: vec![Attachment {
                filename: "a.pdf".into(),
                content_type: "application/pdf".into(),
                data_base64: "QUJD".repeat(300),
            }],
            template: None,
        };
        let raw = Content::Raw {
            data_base64: "TUlNRQ==".repeat(100),
        };
        for content in [fields, raw] {
            let json = serde_json::to_string(&content).unwrap();
            assert_eq!(serde_json::from_str::<Content>(&json).unwrap(), content);
        }
    }
}
