//! The stored form of a message's content, written straight into one buffer.
//!
//! `serde_json` looks up every byte of a string in its escape table, about nine instructions a
//! byte: for the benchmark's 4 KB text that was 9 % of the server's instructions (callgrind), and
//! an attachment's base64 (which never needs escaping) costs the same per byte. Here eight bytes
//! at a time are checked for the few that need escaping and the runs between them are copied
//! whole. The document is written by hand rather than through `serde_json`'s serializer: handing
//! it escaped text meant a `RawValue`, which parses that text again to check it (3.4 % of the
//! server's instructions) and copies it once more. The bytes are the ones `serde_json` writes
//! for `Content`'s derived `Serialize`, which the tests hold equal, so either reads the other.

use super::message::{Attachment, Content};

impl Content {
    /// Appends the JSON document that is stored for this content (and that
    /// `serde_json::from_str::<Content>` reads back).
    pub fn write_json(&self, out: &mut String) {
        match self {
            Content::Fields {
                subject,
                text,
                html,
                reply_to,
                headers,
                attachments,
                template,
            } => {
                out.push_str("{\"kind\":\"fields\",\"subject\":");
                escape_into(subject, out);
                out.push_str(",\"text\":");
                option_into(text, out);
                out.push_str(",\"html\":");
                option_into(html, out);
                out.push_str(",\"reply_to\":");
                option_into(reply_to, out);
                out.push_str(",\"headers\":[");
                for (i, (name, value)) in headers.iter().enumerate() {
                    out.push_str(if i == 0 { "[" } else { ",[" });
                    escape_into(name, out);
                    out.push(',');
                    escape_into(value, out);
                    out.push(']');
                }
                out.push_str("],\"attachments\":[");
                for (i, a) in attachments.iter().enumerate() {
                    let Attachment {
                        filename,
                        content_type,
                        data_base64,
                    } = a;
                    out.push_str(if i == 0 { "{" } else { ",{" });
                    out.push_str("\"filename\":");
                    escape_into(filename, out);
                    out.push_str(",\"content_type\":");
                    escape_into(content_type, out);
                    out.push_str(",\"data_base64\":");
                    escape_into(data_base64, out);
                    out.push('}');
                }
                out.push_str("],\"template\":");
                option_into(template, out);
                out.push('}');
            }
            Content::Raw { data_base64 } => {
                out.push_str("{\"kind\":\"raw\",\"data_base64\":");
                escape_into(data_base64, out);
                out.push('}');
            }
        }
    }
}

fn option_into(value: &Option<String>, out: &mut String) {
    match value {
        Some(v) => escape_into(v, out),
        None => out.push_str("null"),
    }
}

/// Appends `value` as a JSON string, quotes included, byte for byte as `serde_json` writes it.
pub fn escape_into(value: &str, out: &mut String) {
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + 2);
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
                run = escape_at(value, i, run, out);
                candidates &= candidates - 1;
            }
        }
    }
    for i in blocks.len() * 16..bytes.len() {
        run = escape_at(value, i, run, out);
    }
    out.push_str(&value[run..]);
    out.push('"');
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

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        escape_into(s, &mut out);
        out
    }

    #[test]
    fn escapes_byte_for_byte_as_serde_json() {
        for s in samples() {
            assert_eq!(escaped(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    /// Contents with every field set and unset, none, one and two headers and attachments,
    /// their strings drawn from the samples.
    fn contents() -> Vec<Content> {
        let samples = samples();
        let mut pick = samples.iter().cycle().step_by(7).cloned();
        let mut out = Vec::new();
        for round in 0..samples.len() / 4 {
            let mut maybe = |n: usize| (round % n != 0).then(|| pick.next().unwrap());
            let (text, html, reply_to, template) = (maybe(2), maybe(3), maybe(5), maybe(4));
            let mut pick = || pick.next().unwrap();
            out.push(Content::Fields {
                subject: pick(),
                text,
                html,
                reply_to,
                headers: (0..round % 3).map(|_| (pick(), pick())).collect(),
                attachments: (0..(round + 1) % 3)
                    .map(|_| Attachment {
                        filename: pick(),
                        content_type: pick(),
                        data_base64: pick(),
                    })
                    .collect(),
                template,
            });
            out.push(Content::Raw {
                data_base64: pick(),
            });
        }
        out
    }

    #[test]
    fn the_document_is_the_one_serde_json_writes() {
        let contents = contents();
        assert!(contents.len() > 400);
        for content in contents {
            let mut fast = String::new();
            content.write_json(&mut fast);
            assert_eq!(
                fast,
                serde_json::to_string(&content).unwrap(),
                "{content:?}"
            );
        }
    }

    #[test]
    fn a_stored_message_reads_back_as_it_was() {
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
        for content in contents().into_iter().chain([fields, raw]) {
            let mut json = String::new();
            content.write_json(&mut json);
            assert_eq!(serde_json::from_str::<Content>(&json).unwrap(), content);
        }
    }
}
