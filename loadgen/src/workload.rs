//! What each operation is: GET or SET (by the read ratio) of a uniformly random key.

use crate::resp::Frame;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Get,
    Set,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    pub kind: OpKind,
    pub key: u64,
}

#[derive(Clone, Debug)]
pub struct Workload {
    read_ratio: f64,
    keys: u64,
    value: Vec<u8>,
}

impl Workload {
    /// `read_ratio` in 0..=1, keys ≥ 1, every SET writes `value_size` bytes.
    pub fn new(read_ratio: f64, keys: u64, value_size: usize) -> Self {
        Self { read_ratio, keys: keys.max(1), value: vec![b'x'; value_size] }
    }

    pub fn next(&self, rng: &mut fastrand::Rng) -> Op {
        let kind = if rng.f64() < self.read_ratio { OpKind::Get } else { OpKind::Set };
        Op { kind, key: rng.u64(..self.keys) }
    }

    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

/// The key's name, `key:NNNNNNNNNNNN` (the shape redis-benchmark uses), written into `buf`.
pub fn key_name(key: u64, buf: &mut [u8; 24]) -> &[u8] {
    buf[..4].copy_from_slice(b"key:");
    let mut k = key;
    for i in (4..16).rev() {
        buf[i] = b'0' + (k % 10) as u8;
        k /= 10;
    }
    &buf[..16]
}

/// Whether a reply is the right answer to the operation (a server error or anything else is not).
pub fn reply_ok(kind: OpKind, reply: &Frame) -> bool {
    match kind {
        OpKind::Get => matches!(reply, Frame::Bulk(_) | Frame::Null),
        OpKind::Set => matches!(reply, Frame::Simple(s) if s == b"OK"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ratio_and_key_range() {
        let w = Workload::new(0.9, 100, 3);
        let mut rng = fastrand::Rng::with_seed(1);
        let ops: Vec<Op> = (0..10_000).map(|_| w.next(&mut rng)).collect();
        let gets = ops.iter().filter(|o| o.kind == OpKind::Get).count();
        assert!((8700..9300).contains(&gets), "{gets}");
        assert!(ops.iter().all(|o| o.key < 100));
        assert_eq!(Workload::new(1.0, 1, 0).next(&mut rng).kind, OpKind::Get);
        assert_eq!(Workload::new(0.0, 1, 0).next(&mut rng).kind, OpKind::Set);
        assert_eq!(w.value(), b"xxx");
    }

    #[test]
    fn key_names() {
        let mut buf = [0; 24];
        assert_eq!(key_name(42, &mut buf), b"key:000000000042");
    }

    #[test]
    fn reply_checks() {
        assert!(reply_ok(OpKind::Get, &Frame::Null));
        assert!(reply_ok(OpKind::Get, &Frame::Bulk(b"v".to_vec())));
        assert!(!reply_ok(OpKind::Get, &Frame::error("ERR")));
        assert!(reply_ok(OpKind::Set, &Frame::simple("OK")));
        assert!(!reply_ok(OpKind::Set, &Frame::Integer(1)));
        assert!(!reply_ok(OpKind::Set, &Frame::simple("QUEUED")));
    }
}
