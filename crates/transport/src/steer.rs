//! Priority steering of UDP datagrams in the kernel.
//!
//! Under overload the kernel's receive queue overflows and drops whatever
//! arrives, BYE and ACK as readily as the flood of new REGISTERs. To keep
//! calls in progress alive, each UDP listener can be a `SO_REUSEPORT` group
//! of two sockets per worker — a *priority* one and a *bulk* one — with a
//! classic BPF program (`SO_ATTACH_REUSEPORT_CBPF`) that looks at the first
//! four bytes of each datagram and picks the socket: responses (`SIP/`),
//! ACK, BYE, CANCEL, PRACK, UPDATE, INFO, NOTIFY, OPTIONS and CRLF
//! keep-alives go to the priority sockets, everything else (REGISTER,
//! INVITE, SUBSCRIBE, MESSAGE...) to the bulk ones. Workers drain their
//! priority socket before each bulk batch, and when the bulk queue
//! overflows the kernel drops from it alone, at no cost to the node.
//!
//! Within a class, the worker is chosen by the packet's receive hash and
//! CPU (so one client's datagrams stay on one worker as far as the kernel
//! keeps them there).

use std::io;
use std::os::fd::AsFd;

use nix::sys::socket::{setsockopt, sockopt};

/// First four bytes (big-endian) of datagrams that go to the priority
/// sockets.
pub const PRIORITY_PREFIXES: [&[u8; 4]; 10] = [
    b"SIP/",
    b"ACK ",
    b"BYE ",
    b"CANC",
    b"PRAC",
    b"UPDA",
    b"INFO",
    b"NOTI",
    b"OPTI",
    b"\r\n\r\n",
];

// Classic BPF opcodes (linux/filter.h; the encoding is fixed ABI).
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const TAX: u16 = 0x07; // BPF_MISC | BPF_TAX
const XOR_X: u16 = 0xac; // BPF_ALU | BPF_XOR | BPF_X
const MOD_K: u16 = 0x94; // BPF_ALU | BPF_MOD | BPF_K
const ADD_K: u16 = 0x04; // BPF_ALU | BPF_ADD | BPF_K
const RET_A: u16 = 0x16; // BPF_RET | BPF_A
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
const SKF_AD_OFF: i32 = -0x1000;
const SKF_AD_RXHASH: i32 = 32;
const SKF_AD_CPU: i32 = 36;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The program for a group of `workers` priority sockets (indices
/// `0..workers`, in bind order) followed by `workers` bulk sockets.
pub fn program(workers: usize) -> Vec<libc::sock_filter> {
    let w = u32::try_from(workers.max(1)).unwrap_or(u32::MAX);
    let pick = |offset: u32| -> Vec<libc::sock_filter> {
        if w == 1 {
            return vec![insn(RET_K, 0, 0, offset)];
        }
        vec![
            insn(LD_W_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_RXHASH) as u32),
            insn(TAX, 0, 0, 0),
            insn(LD_W_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_CPU) as u32),
            insn(XOR_X, 0, 0, 0),
            insn(MOD_K, 0, 0, w),
            insn(ADD_K, 0, 0, offset),
            insn(RET_A, 0, 0, 0),
        ]
    };
    let bulk = pick(w);
    let priority = pick(0);
    let n = PRIORITY_PREFIXES.len();
    // A datagram shorter than four bytes ends the program (return 0: the
    // first priority socket), which is fine for junk and short pings.
    let mut p = vec![insn(LD_W_ABS, 0, 0, 0)];
    for (i, prefix) in PRIORITY_PREFIXES.iter().enumerate() {
        // From the jump after this one to the first priority instruction.
        let to_priority = (n - 1 - i) + bulk.len();
        p.push(insn(
            JEQ_K,
            u8::try_from(to_priority).unwrap_or(u8::MAX),
            0,
            u32::from_be_bytes(**prefix),
        ));
    }
    p.extend(bulk);
    p.extend(priority);
    p
}

/// Attaches [`program`] to the `SO_REUSEPORT` group `socket` belongs to
/// (call it once every socket of the group is bound).
pub fn attach(socket: &impl AsFd, workers: usize) -> io::Result<()> {
    let mut filters = program(workers);
    let fprog = libc::sock_fprog {
        len: u16::try_from(filters.len()).map_err(|_| io::ErrorKind::InvalidInput)?,
        filter: filters.as_mut_ptr(),
    };
    // The kernel copies the program during the call.
    setsockopt(socket, sockopt::AttachReusePortCbpf, &fprog).map_err(io::Error::from)
}

/// Which class a datagram falls in, as the program decides it (for tests
/// and logs): `true` for priority.
pub fn is_priority(datagram: &[u8]) -> bool {
    datagram
        .get(..4)
        .is_none_or(|head| PRIORITY_PREFIXES.iter().any(|p| p[..] == *head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_the_priority_branch() {
        for workers in [1, 2, 5] {
            let p = program(workers);
            let first_priority = p.len() - if workers == 1 { 1 } else { 7 };
            for (i, ins) in p.iter().enumerate().filter(|(_, i)| i.code == JEQ_K) {
                assert_eq!(
                    i + 1 + usize::from(ins.jt),
                    first_priority,
                    "workers {workers}"
                );
                assert_eq!(ins.jf, 0);
            }
            assert!(p.len() < 4096);
        }
    }

    #[test]
    fn classes() {
        assert!(is_priority(b"BYE sip:a@b SIP/2.0\r\n"));
        assert!(is_priority(b"SIP/2.0 200 OK\r\n"));
        assert!(is_priority(b"\r\n\r\n"));
        assert!(is_priority(b"\r\n"));
        assert!(!is_priority(b"REGISTER sip:b SIP/2.0\r\n"));
        assert!(!is_priority(b"INVITE sip:a@b SIP/2.0\r\n"));
    }
}
