//! How `sluice consume` prints a record: a `--format` string with kcat's tokens, or the
//! console consumer's default (the value, or key TAB value with `--print-key`, null as
//! `null`). Parsed once, then applied to each record as raw bytes (binary-safe).

use crate::client::ConsumerRecord;

/// One piece of a format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Text(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    KeyLen,
    Value,
    ValueLen,
    Timestamp,
    Headers,
}

/// A parsed output format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    tokens: Vec<Token>,
    /// Print a null key or value as `null` (console-consumer style) instead of nothing.
    null_text: bool,
}

/// What `--format` understands, for the help text.
pub const FORMAT_HELP: &str = "%t topic, %p partition, %o offset, %k key, %K key length (-1 for null), \
%v or %s value, %S value length (-1 for null), %T timestamp (ms), %h headers (k=v,k2=v2), %% a percent sign; \
\\n \\t \\r \\\\ escapes. A null key or value prints as nothing.";

impl Format {
    /// The console consumer's default: value, or key, separator, value; null as `null`.
    pub fn default_layout(print_key: bool, key_separator: &str) -> Self {
        let mut tokens = Vec::new();
        if print_key {
            tokens.push(Token::Key);
            tokens.push(Token::Text(key_separator.as_bytes().to_vec()));
        }
        tokens.push(Token::Value);
        tokens.push(Token::Text(b"\n".to_vec()));
        Self {
            tokens,
            null_text: true,
        }
    }

    /// Parses a `--format` string.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let mut text = Vec::new();
        let mut chars = spec.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '%' => match chars.next() {
                    Some('t') => Token::Topic,
                    Some('p') => Token::Partition,
                    Some('o') => Token::Offset,
                    Some('k') => Token::Key,
                    Some('K') => Token::KeyLen,
                    Some('v') | Some('s') => Token::Value,
                    Some('S') => Token::ValueLen,
                    Some('T') => Token::Timestamp,
                    Some('h') => Token::Headers,
                    Some('%') => {
                        text.push(b'%');
                        continue;
                    }
                    Some(other) => {
                        return Err(format!(
                            "unknown format token '%{other}' (known: {FORMAT_HELP})"
                        ))
                    }
                    None => return Err("the format ends with a lone '%'".into()),
                },
                '\\' => {
                    let escaped = match chars.next() {
                        Some('n') => b'\n',
                        Some('t') => b'\t',
                        Some('r') => b'\r',
                        Some('\\') => b'\\',
                        Some('0') => 0,
                        Some(other) => return Err(format!("unknown escape '\\{other}'")),
                        None => b'\\',
                    };
                    text.push(escaped);
                    continue;
                }
                c => {
                    let mut buf = [0u8; 4];
                    text.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    continue;
                }
            };
            if !text.is_empty() {
                tokens.push(Token::Text(std::mem::take(&mut text)));
            }
            tokens.push(token);
        }
        if !text.is_empty() {
            tokens.push(Token::Text(text));
        }
        Ok(Self {
            tokens,
            null_text: false,
        })
    }

    /// Appends the record as this format prints it.
    pub fn write(&self, r: &ConsumerRecord, out: &mut Vec<u8>) {
        for t in &self.tokens {
            match t {
                Token::Text(b) => out.extend_from_slice(b),
                Token::Topic => out.extend_from_slice(r.topic.as_bytes()),
                Token::Partition => out.extend_from_slice(r.partition.to_string().as_bytes()),
                Token::Offset => out.extend_from_slice(r.offset.to_string().as_bytes()),
                Token::Timestamp => out.extend_from_slice(r.timestamp.to_string().as_bytes()),
                Token::Key => self.bytes(r.key.as_deref(), out),
                Token::Value => self.bytes(r.value.as_deref(), out),
                Token::KeyLen => out.extend_from_slice(len(r.key.as_deref()).as_bytes()),
                Token::ValueLen => out.extend_from_slice(len(r.value.as_deref()).as_bytes()),
                Token::Headers => headers(r, out),
            }
        }
    }

    fn bytes(&self, b: Option<&[u8]>, out: &mut Vec<u8>) {
        match b {
            Some(b) => out.extend_from_slice(b),
            None if self.null_text => out.extend_from_slice(b"null"),
            None => {}
        }
    }
}

fn len(b: Option<&[u8]>) -> String {
    b.map_or(-1, |b| b.len() as i64).to_string()
}

/// `k=v,k2=v2`; a null header value prints as `k` alone.
fn headers(r: &ConsumerRecord, out: &mut Vec<u8>) {
    for (i, h) in r.headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&h.key);
        if let Some(v) = &h.value {
            out.push(b'=');
            out.extend_from_slice(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Header, TimestampType};
    use bytes::Bytes;

    fn record(key: Option<&'static [u8]>, value: Option<&'static [u8]>) -> ConsumerRecord {
        ConsumerRecord {
            topic: "t".into(),
            partition: 2,
            offset: 42,
            timestamp: 1700,
            timestamp_type: TimestampType::CreateTime,
            key: key.map(Bytes::from_static),
            value: value.map(Bytes::from_static),
            headers: vec![
                Header {
                    key: Bytes::from_static(b"a"),
                    value: Some(Bytes::from_static(b"1")),
                },
                Header {
                    key: Bytes::from_static(b"n"),
                    value: None,
                },
            ],
        }
    }

    fn show(f: &Format, r: &ConsumerRecord) -> String {
        let mut out = Vec::new();
        f.write(r, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_token_prints() {
        let f = Format::parse("%t|%p|%o|%k|%K|%v|%s|%S|%T|%h|%%\\n").unwrap();
        assert_eq!(
            show(&f, &record(Some(b"key"), Some(b"val"))),
            "t|2|42|key|3|val|val|3|1700|a=1,n|%\n"
        );
        assert_eq!(
            show(&f, &record(None, None)),
            "t|2|42||-1|||-1|1700|a=1,n|%\n"
        );
    }

    #[test]
    fn default_layout_is_the_console_consumers() {
        let r = record(None, Some(b"v"));
        assert_eq!(show(&Format::default_layout(false, "\t"), &r), "v\n");
        assert_eq!(show(&Format::default_layout(true, ":"), &r), "null:v\n");
    }

    #[test]
    fn bad_formats_say_why() {
        assert!(Format::parse("%q").unwrap_err().contains("%q"));
        assert!(Format::parse("50%").is_err());
    }
}
