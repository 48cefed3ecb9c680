//! The proxy's call-control hooks, implemented with the node's media relay
//! set (`voxline-media`) and call detail records (`voxline-cdr`).

use std::net::SocketAddr;
use std::sync::Arc;

use voxline_cdr::{
    CdrRecord, CdrWriter, HangupReason, RelayUsage, Source, Timestamp, TransportKind,
};
use voxline_dialog::{Ended, Hangup};
use voxline_media::{AnswerParams, DeleteParams, MediaControl, OfferParams};
use voxline_proxy::calls::{
    BoxFuture, CallRecorder, MediaAnchor, MediaFailure, MediaReport, SdpExchange,
};

/// Media anchoring on the configured relay set.
pub struct RelayAnchor {
    media: Arc<MediaControl>,
    /// Media older than this (seconds) counts as stopped.
    quiet_secs: i64,
}

impl RelayAnchor {
    pub fn new(media: Arc<MediaControl>, quiet_secs: u64) -> Self {
        RelayAnchor {
            media,
            quiet_secs: i64::try_from(quiet_secs.max(1)).unwrap_or(i64::MAX),
        }
    }
}

impl MediaAnchor for RelayAnchor {
    fn offer<'a>(
        &'a self,
        x: SdpExchange<'a>,
    ) -> BoxFuture<'a, Result<(String, String), MediaFailure>> {
        Box::pin(async move {
            let mut p = OfferParams::new(x.call_id, x.from_tag, x.sdp, x.source);
            p.via_branch = x.via_branch.map(str::to_owned);
            p.to_tag = x.to_tag.map(str::to_owned);
            self.media
                .offer(&p)
                .await
                .map(|(sdp, relay)| (sdp, relay.address.to_string()))
                .map_err(|e| MediaFailure(e.to_string()))
        })
    }

    fn answer<'a>(&'a self, x: SdpExchange<'a>) -> BoxFuture<'a, Result<String, MediaFailure>> {
        Box::pin(async move {
            let p = AnswerParams::new(
                x.call_id,
                x.from_tag,
                x.to_tag.unwrap_or(""),
                x.sdp,
                x.source,
            );
            self.media
                .answer(&p)
                .await
                .map(|(sdp, _)| sdp)
                .map_err(|e| MediaFailure(e.to_string()))
        })
    }

    fn delete<'a>(
        &'a self,
        call_id: &'a str,
        from_tag: &'a str,
    ) -> BoxFuture<'a, Option<MediaReport>> {
        Box::pin(async move {
            let relay = self.media.relay_of(call_id)?.address.to_string();
            let stats = self
                .media
                .delete(&DeleteParams {
                    call_id,
                    from_tag,
                    to_tag: None,
                    via_branch: None,
                })
                .await?;
            Some(MediaReport { relay, stats })
        })
    }

    fn media_active<'a>(
        &'a self,
        call_id: &'a str,
        _from_tag: &'a str,
    ) -> BoxFuture<'a, Option<bool>> {
        Box::pin(async move {
            match self.media.query(call_id).await {
                Ok(stats) => {
                    let last = stats
                        .tags
                        .iter()
                        .flat_map(|t| &t.medias)
                        .flat_map(|m| &m.streams)
                        .map(|s| s.last_packet)
                        .max()
                        .unwrap_or(0);
                    let now =
                        i64::try_from(voxline_proxy::calls::now_ms() / 1000).unwrap_or(i64::MAX);
                    Some(last > 0 && now - last < self.quiet_secs)
                }
                // The relay no longer knows the call: its own media timeout
                // ended it.
                Err(
                    voxline_media::MediaError::UnknownCall(_)
                    | voxline_media::MediaError::Relay {
                        source: voxline_ng::client::NgError::Remote(_),
                        ..
                    },
                ) => Some(false),
                Err(_) => None,
            }
        })
    }
}

/// Call records through the lossless CDR writer.
pub struct CdrSink {
    writer: CdrWriter,
    node: String,
}

impl CdrSink {
    pub fn new(writer: CdrWriter, node: String) -> Self {
        CdrSink { writer, node }
    }
}

impl CallRecorder for CdrSink {
    fn record(&self, ended: &Ended, media: Option<&MediaReport>) {
        let info = &ended.info;
        let source = Source {
            addr: info
                .source
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
            transport: TransportKind::parse(&info.transport).unwrap_or(TransportKind::Udp),
        };
        let ms = |v: u64| Timestamp::from_unix_ms(i64::try_from(v).unwrap_or(i64::MAX));
        let mut r = CdrRecord::new(
            &info.call_id,
            &self.node,
            source,
            ms(info.started_ms),
            ms(ended.ended_ms),
        );
        r.caller.aor = info.caller.clone();
        r.callee.aor = info.callee.clone();
        r.callee.request_uri = format!("sip:{}", info.callee);
        r.answer = info.answered_ms.map(ms);
        r.status = ended.status;
        r.reason = ended.reason.clone();
        let answered = info.answered_ms.is_some();
        r.hangup = match &ended.hangup {
            Hangup::Caller if answered => voxline_cdr::Hangup::caller(HangupReason::Bye),
            Hangup::Caller => voxline_cdr::Hangup::caller(HangupReason::Cancel),
            Hangup::Callee if answered => voxline_cdr::Hangup::callee(HangupReason::Bye),
            Hangup::Callee => voxline_cdr::Hangup::callee(HangupReason::Rejected),
            Hangup::Proxy(why) => voxline_cdr::Hangup::proxy(match why.as_str() {
                "max-duration" => HangupReason::MaxDuration,
                "timeout" | "ringing-timeout" => HangupReason::Timeout,
                "no-media" => HangupReason::Inactivity,
                other => HangupReason::Other(other.to_owned()),
            }),
        };
        r.relay =
            media.map(|m| RelayUsage::from_call_stats(m.relay.clone(), &m.stats, &info.from_tag));
        self.writer.record(r);
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.writer.shutdown())
    }
}
