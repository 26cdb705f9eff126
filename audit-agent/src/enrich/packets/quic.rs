//! QUIC connections of watched sockets: the first datagrams a socket sends that start with a
//! long header (the kernel captures two) are read as Initial packets, their CRYPTO frames
//! reassembled by offset, and the ClientHello in them recorded as `network.tls` with `tls.quic`
//! — the server name of an HTTP/3 request, read from the packets (`wire::quic`). A version that
//! cannot be decrypted is recorded as such, without a name.

use std::{net::SocketAddr, time::Instant};

use super::{Made, Reassembly, hello_made};
use crate::{
    decode::{Packet, Task},
    wire::{
        quic::{self, CRYPTO_MAX, Datagram},
        tls,
    },
};

/// Most QUIC flows followed at once; beyond it the oldest are read as they are.
const MAX_FLOWS: usize = 16_384;
/// Initial packets read per flow (what the kernel captures).
const PACKETS: u8 = 2;

struct Flow {
    task: Task,
    remote: SocketAddr,
    crypto: Reassembly,
    packets: u8,
    seen: Instant,
}

/// QUIC flows whose hello is not read yet, by socket cookie.
#[derive(Default)]
pub(super) struct QuicFlows {
    flows: crate::FastMap<u64, Flow>,
    /// Sockets whose hello was read (or found unreadable): later datagrams are ignored.
    done: crate::FastMap<u64, Instant>,
}

impl QuicFlows {
    /// A datagram a watched socket sent that starts like a QUIC long header.
    pub(super) fn datagram(&mut self, task: &Task, p: &Packet, out: &mut Vec<Made>) {
        if self.done.contains_key(&p.cookie) {
            return;
        }
        let hello = match quic::initial(&p.data) {
            Datagram::Initial(i) => {
                if self.flows.len() >= MAX_FLOWS {
                    self.flows.clear();
                }
                let flow = self.flows.entry(p.cookie).or_insert_with(|| Flow {
                    task: task.clone(),
                    remote: p.remote,
                    crypto: Reassembly::default(),
                    packets: 0,
                    seen: Instant::now(),
                });
                for (offset, data) in i.crypto {
                    flow.crypto.put(offset as u32, &data, CRYPTO_MAX as u32);
                }
                flow.packets += 1;
                flow.seen = Instant::now();
                match tls::client_hello_message(flow.crypto.contiguous(), flow.packets < PACKETS) {
                    Some(h) => h,
                    None => return,
                }
            }
            Datagram::Unreadable { issue, .. } => tls::Hello {
                issues: vec![issue],
                ..Default::default()
            },
        };
        let flow = self.flows.remove(&p.cookie);
        let (task, remote) = flow.map_or((task.clone(), p.remote), |f| (f.task, f.remote));
        self.finish(p.cookie, task, remote, hello, out);
    }

    /// Flows quiet for `wait` (all when `flush`): read as far as they go.
    pub(super) fn ready(&mut self, flush: bool, wait: std::time::Duration, out: &mut Vec<Made>) {
        let now = Instant::now();
        let quiet: Vec<u64> = self
            .flows
            .iter()
            .filter(|(_, f)| flush || now.duration_since(f.seen) >= wait)
            .map(|(k, _)| *k)
            .collect();
        for k in quiet {
            if let Some(f) = self.flows.remove(&k) {
                let hello =
                    tls::client_hello_message(f.crypto.contiguous(), false).unwrap_or_default();
                self.finish(k, f.task, f.remote, hello, out);
            }
        }
        self.done.retain(|_, at| now.duration_since(*at) < wait * 6);
    }

    fn finish(
        &mut self,
        cookie: u64,
        task: Task,
        remote: SocketAddr,
        mut hello: tls::Hello,
        out: &mut Vec<Made>,
    ) {
        hello.quic = true;
        if self.done.len() >= MAX_FLOWS {
            self.done.clear();
        }
        self.done.insert(cookie, Instant::now());
        out.push(hello_made(&task, remote, cookie, hello, None));
    }
}
