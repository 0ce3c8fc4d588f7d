//! `log!`: formatted messages to the tenant's log without allocating.

use std::fmt::{self, Write};

use crate::abi;

/// Longest message [`log!`](crate::log!) sends; longer ones are cut at a
/// character boundary. The host limits each tenant's log to a few bytes per
/// second and drops the excess, so a longer line would mostly buy dropped
/// text. The message is formatted on the stack (the shadow stack is 1 MiB),
/// so logging never allocates and never grows memory.
pub const LOG_MESSAGE_BYTES_MAX: usize = 1024;

/// Formats `args` into a stack buffer and hands it to the host log.
pub(crate) fn write(args: fmt::Arguments<'_>) {
    // A message without arguments needs no formatting.
    if let Some(message) = args.as_str() {
        abi::log(truncate(message, LOG_MESSAGE_BYTES_MAX));
        return;
    }
    let mut buffer = Bounded {
        bytes: [0; LOG_MESSAGE_BYTES_MAX],
        len: 0,
    };
    // An error only means the message reached the limit; what fits is sent.
    let _ = buffer.write_fmt(args);
    abi::log(buffer.as_str());
}

/// The longest prefix of `text` that fits in `bytes_max` bytes and ends on a
/// character boundary.
fn truncate(text: &str, bytes_max: usize) -> &str {
    if text.len() <= bytes_max {
        return text;
    }
    let mut end = bytes_max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A fixed-size UTF-8 buffer that stops formatting when full.
struct Bounded {
    bytes: [u8; LOG_MESSAGE_BYTES_MAX],
    len: usize,
}

impl Bounded {
    fn as_str(&self) -> &str {
        // Only whole `&str`s, cut at character boundaries, are ever copied in.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl Write for Bounded {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let room = LOG_MESSAGE_BYTES_MAX - self.len;
        let fits = truncate(text, room);
        self.bytes[self.len..self.len + fits.len()].copy_from_slice(fits.as_bytes());
        self.len += fits.len();
        // Stop the formatter as soon as anything is cut.
        if fits.len() == text.len() {
            Ok(())
        } else {
            Err(fmt::Error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn messages_are_formatted() {
        crate::log!("plain");
        crate::log!("imp {} at {:.2}", "1", 1.5);
        assert_eq!(testing::take_log(), ["plain", "imp 1 at 1.50"]);
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        // 'é' is two bytes: the limit falls inside the last whole one.
        let long = "é".repeat(LOG_MESSAGE_BYTES_MAX);
        crate::log!("{long}");
        crate::log!("x{long}");
        let log = testing::take_log();
        assert_eq!(log[0], "é".repeat(LOG_MESSAGE_BYTES_MAX / 2));
        assert_eq!(log[1].len(), LOG_MESSAGE_BYTES_MAX - 1);
        assert!(log[1].starts_with("xé"));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("abcdef", 4), "abcd");
        assert_eq!(truncate("abcdef", 100), "abcdef");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aé", 3), "aé");
    }
}
