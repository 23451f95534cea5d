//! Reading the kernel's exit record and QEMU's exit code.

use hermit_interface::qemu::EXIT_RECORD;

/// Splits the kernel log into the log without its exit record and the status
/// the record carries. The record counts only at the start of a line and with
/// a complete decimal `i32` followed by `\n`; the last one wins.
pub fn split_exit_record(log: &[u8]) -> (Vec<u8>, Option<i32>) {
    let marker = EXIT_RECORD.as_bytes();
    let mut at = log.len();
    while let Some(start) = rfind(&log[..at], marker) {
        at = start;
        if start != 0 && log[start - 1] != b'\n' {
            continue;
        }
        let rest = &log[start + marker.len()..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            continue;
        };
        let Some(status) = std::str::from_utf8(&rest[..nl])
            .ok()
            .and_then(|s| s.parse().ok())
        else {
            continue;
        };
        let mut without = log[..start].to_vec();
        without.extend_from_slice(&rest[nl + 1..]);
        return (without, Some(status));
    }
    (log.to_vec(), None)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// The value the guest wrote to `isa-debug-exit`, if `code` can be one
/// (QEMU exits with `(value << 1) | 1`).
pub fn debug_exit_value(code: i32) -> Option<i32> {
    (code & 1 == 1).then_some(code >> 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_record() {
        let log = b"boot\n\x01hermit-exit:42\n";
        assert_eq!(split_exit_record(log), (b"boot\n".to_vec(), Some(42)));
        assert_eq!(
            split_exit_record(b"\x01hermit-exit:-3\n"),
            (Vec::new(), Some(-3))
        );
        assert_eq!(
            split_exit_record(b"\x01hermit-exit:0\ntrailing"),
            (b"trailing".to_vec(), Some(0))
        );
    }

    #[test]
    fn ignores_broken_or_misplaced_records() {
        for log in [
            &b"no record\n"[..],
            b"\x01hermit-exit:7",
            b"\x01hermit-exit:x\n",
            b"\x01hermit-exit:99999999999\n",
            b"text\x01hermit-exit:1\n",
        ] {
            assert_eq!(split_exit_record(log), (log.to_vec(), None), "{log:?}");
        }
    }

    #[test]
    fn last_valid_record_wins() {
        let log = b"\x01hermit-exit:1\nmore\n\x01hermit-exit:2\n\x01hermit-exit:";
        let (rest, status) = split_exit_record(log);
        assert_eq!(status, Some(2));
        assert_eq!(rest, b"\x01hermit-exit:1\nmore\n\x01hermit-exit:".to_vec());
    }

    #[test]
    fn decodes_debug_exit() {
        assert_eq!(debug_exit_value(1), Some(0));
        assert_eq!(debug_exit_value(3), Some(1));
        assert_eq!(debug_exit_value(255), Some(127));
        assert_eq!(debug_exit_value(0), None);
        assert_eq!(debug_exit_value(2), None);
    }
}
