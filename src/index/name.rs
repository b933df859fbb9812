//! Host names as the index keys them: lower-case ASCII, no trailing dot,
//! validated against DNS limits before anything is stored.

use compact_str::CompactString;

/// Longest name in presentation form without the trailing dot: 255 octets
/// on the wire is 253 characters here.
pub const MAX_NAME_LEN: usize = 253;
pub const MAX_LABEL_LEN: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty name")]
    Empty,
    #[error("name is {0} characters long (limit {MAX_NAME_LEN})")]
    TooLong(usize),
    #[error("label {0:?} is longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong(String),
    #[error("empty label")]
    EmptyLabel,
    #[error("invalid character {0:?} (allowed: letters, digits, '-', '_', and '*' as a whole first label)")]
    InvalidChar(char),
}

/// Normalizes a ServiceEntry host into an index key: `*.Foo.Global.` becomes
/// `*.foo.global`.
pub fn normalize_host(host: &str) -> Result<CompactString, NameError> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err(NameError::Empty);
    }
    if host.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(host.len()));
    }
    for (i, label) in host.split('.').enumerate() {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong(label.to_owned()));
        }
        if i == 0 && label == "*" {
            continue;
        }
        if let Some(c) = label.chars().find(|c| !is_key_char(*c)) {
            return Err(NameError::InvalidChar(c));
        }
    }
    // Inline up to 24 bytes: the index keeps one per host of every entry.
    let mut key = CompactString::from(host);
    key.make_ascii_lowercase();
    Ok(key)
}

/// Characters a stored key may hold besides the dots and a leading `*`.
/// Anything else in a query name means it cannot match a stored key.
pub fn is_key_char(c: char) -> bool {
    c.is_ascii() && is_key_byte(c as u8)
}

const fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Each byte of a query name as a key holds it: letters lower-cased, other
/// key characters kept, anything else `?`, which no key holds. A table
/// because the DNS fast path maps every byte of every query name.
pub const KEY_BYTE: [u8; 256] = {
    let mut table = [b'?'; 256];
    let mut b = 0;
    while b < 256 {
        let c = (b as u8).to_ascii_lowercase();
        if is_key_byte(c) {
            table[b] = c;
        }
        b += 1;
    }
    table
};

/// True when `name` equals `zone` or lies below it (both normalized).
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || (name.len() > zone.len() && name.ends_with(zone) && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

/// Proper ancestors of a normalized name, nearest first:
/// `a.b.global` yields `b.global`, `global`.
pub fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.').map(move |(i, _)| &name[i + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_byte_table_is_the_key_character_rule() {
        for b in 0..=u8::MAX {
            let lower = b.to_ascii_lowercase();
            let want = if is_key_char(lower as char) { lower } else { b'?' };
            assert_eq!(KEY_BYTE[usize::from(b)], want, "byte {b:#04x}");
        }
    }

    #[test]
    fn normalizes_case_and_trailing_dot() {
        assert_eq!(&*normalize_host("HttpBin.Bar.Global.").unwrap(), "httpbin.bar.global");
        assert_eq!(&*normalize_host("*.Foo.global").unwrap(), "*.foo.global");
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(normalize_host(""), Err(NameError::Empty));
        assert_eq!(normalize_host("."), Err(NameError::Empty));
        assert_eq!(normalize_host("a..global"), Err(NameError::EmptyLabel));
        assert!(matches!(
            normalize_host(&format!("{}.global", "a".repeat(64))),
            Err(NameError::LabelTooLong(_))
        ));
        assert!(normalize_host(&format!("{}.global", "a".repeat(63))).is_ok());
        let long = format!("{}global", "abcdefghi.".repeat(25)); // 256 characters
        assert_eq!(normalize_host(&long), Err(NameError::TooLong(256)));
        assert_eq!(normalize_host("a b.global"), Err(NameError::InvalidChar(' ')));
        assert_eq!(normalize_host("a.*.global"), Err(NameError::InvalidChar('*')));
        assert_eq!(normalize_host("*x.global"), Err(NameError::InvalidChar('*')));
        assert_eq!(normalize_host("ünicode.global"), Err(NameError::InvalidChar('ü')));
    }

    #[test]
    fn zone_membership_is_label_aligned() {
        assert!(in_zone("a.global", "global"));
        assert!(in_zone("global", "global"));
        assert!(!in_zone("aglobal", "global"));
        assert!(!in_zone("global.com", "global"));
    }

    #[test]
    fn ancestors_nearest_first() {
        assert_eq!(ancestors("a.b.global").collect::<Vec<_>>(), ["b.global", "global"]);
        assert_eq!(ancestors("global").count(), 0);
    }
}
