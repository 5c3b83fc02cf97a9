//! The streamed-answer stage: server-sent events framed across chunks, output checks on a
//! sliding window of the answer so far, placeholders restored delta by delta, a provider-format
//! error event when policy stops the stream; and token counting for streams nothing inspects.

use super::answer::{format_findings, length_finding, FORMAT_DETECTORS};
use super::{apply, Engine, Exchange};
use crate::detect::DetectorId;
use crate::model::{Role, TextSlot};
use crate::providers::{self, json};
use crate::stream::answer::{build_event, restore_json, Template};
use crate::stream::sse;

impl Engine {
    /// Processes one chunk of a streamed (SSE) answer; returns the bytes to send on. Bytes of an
    /// event not yet complete are held until it is; at `end` everything left is sent.
    pub(crate) fn stream_chunk(&self, ex: &mut Exchange, chunk: &[u8], end: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + 64);
        if ex.answer_stream.stopped {
            return out;
        }
        let events = ex.answer_stream.framer.push(chunk);
        for raw in events {
            self.stream_event(ex, &raw, &mut out);
            if ex.answer_stream.stopped {
                return out;
            }
        }
        if end {
            let rest = ex.answer_stream.framer.finish();
            if !rest.is_empty() {
                self.stream_event(ex, &rest, &mut out);
            }
            self.check_whole_text(ex, &mut out);
            if !ex.answer_stream.stopped {
                self.flush_held_text(ex, &mut out);
            }
        }
        out
    }

    /// The checks of the answer's whole text (format, language), once: when the provider says
    /// the text ended, else at the end of the stream. The text has been sent by then, so a
    /// block ends the stream with an error event for the client to see.
    fn check_whole_text(&self, ex: &mut Exchange, out: &mut Vec<u8>) {
        let policy = self.policy(ex);
        if ex.answer_stream.text_checked || !policy.any_enabled(&FORMAT_DETECTORS) {
            return;
        }
        ex.answer_stream.text_checked = true;
        let mut findings = Vec::new();
        let stream = &ex.answer_stream;
        format_findings(policy, &stream.text, !stream.text_cut, &mut findings);
        let mut blocked_by = None;
        let _ = apply(policy, &findings, &mut ex.verdict, &mut blocked_by);
        if let Some(detector) = blocked_by {
            self.stop_stream(ex, detector, out);
        }
    }

    /// Ends the stream with a provider-format error event naming the policy that fired.
    fn stop_stream(&self, ex: &mut Exchange, detector: DetectorId, out: &mut Vec<u8>) {
        let message = format!(
            "Sluice stopped this answer: policy `{}` fired (request id {})",
            detector.name(),
            ex.head.request_id
        );
        let error = providers::stream_error_event(ex.endpoint.provider, detector.name(), &message);
        out.extend_from_slice(error.as_bytes());
        ex.answer_stream.stopped = true;
    }

    fn stream_event(&self, ex: &mut Exchange, raw: &[u8], out: &mut Vec<u8>) {
        let Some(event) = sse::parse_event(raw) else {
            out.extend_from_slice(raw);
            return;
        };
        if event.data.is_empty() {
            out.extend_from_slice(raw);
            return;
        }
        let read = providers::stream_event(ex.endpoint, event.name, &event.data);
        account_stream_event(ex, &read);
        if read.ends_text {
            self.check_whole_text(ex, out);
            if ex.answer_stream.stopped {
                return;
            }
            self.flush_held_text(ex, out);
        }
        if read.deltas.is_empty() {
            match restore_json(&event.data, &ex.vault).filter(|_| !ex.vault.is_empty()) {
                Some(data) => out.extend(build_event(event.name, &data)),
                None => out.extend_from_slice(raw),
            }
            return;
        }
        let policy = self.policy(ex);
        let keep_text = policy.any_enabled(&FORMAT_DETECTORS);
        let masking = policy.redacts(DetectorId::Pii) || policy.redacts(DetectorId::Secrets);
        let mut changed = Vec::with_capacity(read.deltas.len());
        let mut findings = Vec::new();
        for slot in &read.deltas {
            ex.answer_stream.slide(&slot.text);
            ex.answer_stream.answer_bytes += slot.text.len();
            if keep_text {
                self.keep_text(ex, &slot.text);
            }
            findings.clear();
            let window = &ex.answer_stream.window;
            if !masking {
                // Reported only; when redacted, the masker below finds them in what it holds.
                self.detectors.scan_values(window, &mut findings);
            }
            // Scripts and links are judged on what the client receives: restored.
            let hosts = &policy.expectations().allowed_hosts;
            if ex.vault.is_empty() {
                self.detectors.scan_output(window, hosts, &mut findings);
            } else {
                let restored = ex.vault.restore(window);
                self.detectors.scan_output(&restored, hosts, &mut findings);
            }
            if let Some(max_bytes) = self.config.max_answer_bytes {
                if ex.answer_stream.answer_bytes > max_bytes {
                    findings.push(length_finding());
                }
            }
            let mut blocked_by = None;
            // Text already sent cannot be masked: `redact` from the output checks reports only.
            let _ = apply(policy, &findings, &mut ex.verdict, &mut blocked_by);
            if let Some(detector) = blocked_by {
                self.stop_stream(ex, detector, out);
                return;
            }
            let released = if masking {
                ex.answer_stream.masker.push(&slot.text);
                match self.release_masked(ex, false) {
                    Ok(text) => text,
                    Err(detector) => {
                        self.stop_stream(ex, detector, out);
                        return;
                    }
                }
            } else {
                slot.text.clone()
            };
            let text = ex.answer_stream.restorer.push(&ex.vault, &released);
            if text != slot.text {
                changed.push(TextSlot {
                    text,
                    ..slot.clone()
                });
            }
        }
        if let [only] = read.deltas.as_slice() {
            ex.answer_stream.template = Some(Template {
                name: event.name.map(str::to_owned),
                data: event.data.clone(),
                literal: only.literal.clone(),
            });
        }
        if changed.is_empty() {
            out.extend_from_slice(raw);
        } else {
            let slots: Vec<&TextSlot> = changed.iter().collect();
            out.extend(build_event(event.name, &json::rewrite(&event.data, &slots)));
        }
    }

    /// Scans what the masker holds for personal data and secrets and releases what can go:
    /// masked where policy redacts, all of it at `end`. `Err` names a detector that blocks.
    fn release_masked(&self, ex: &mut Exchange, end: bool) -> Result<String, DetectorId> {
        let mut values = Vec::new();
        self.detectors
            .scan_values(ex.answer_stream.masker.pending(), &mut values);
        let mut blocked_by = None;
        let to_mask = apply(self.policy(ex), &values, &mut ex.verdict, &mut blocked_by);
        match blocked_by {
            Some(detector) => Err(detector),
            None => Ok(ex.answer_stream.masker.release(&to_mask, end)),
        }
    }

    /// Sends the text the masker and the restorer held back (a possible value or placeholder
    /// in progress) as one more delta event, when a run of text ends.
    fn flush_held_text(&self, ex: &mut Exchange, out: &mut Vec<u8>) {
        if ex.answer_stream.masker.pending().is_empty()
            && ex.answer_stream.restorer.pending_len() == 0
        {
            return;
        }
        let masked = match self.release_masked(ex, true) {
            Ok(text) => text,
            Err(detector) => return self.stop_stream(ex, detector, out),
        };
        let stream = &mut ex.answer_stream;
        let mut held = stream.restorer.push(&ex.vault, &masked);
        held.push_str(&stream.restorer.finish(&ex.vault));
        let Some(template) = &stream.template else {
            return;
        };
        let slot = TextSlot {
            role: Role::Assistant,
            literal: template.literal.clone(),
            text: held,
        };
        let data = json::rewrite(&template.data, &[&slot]);
        out.extend(build_event(template.name.as_deref(), &data));
    }

    /// Keeps a delta for the checks of the whole text, up to `max_body_bytes` of it.
    fn keep_text(&self, ex: &mut Exchange, delta: &str) {
        let stream = &mut ex.answer_stream;
        let room = self.config.max_body_bytes.saturating_sub(stream.text.len());
        let kept = sluice_text::truncate(delta, room);
        stream.text.push_str(kept);
        stream.text_cut |= kept.len() < delta.len();
    }

    /// Reads only the token usage of a streamed answer the filter does not otherwise inspect:
    /// events are framed for counting while the bytes pass on untouched.
    pub(crate) fn observe_stream(&self, ex: &mut Exchange, chunk: &[u8], end: bool) {
        let mut events = ex.answer_stream.framer.push(chunk);
        if ex.answer_stream.framer.pending().len() > self.config.max_body_bytes {
            // An event that never ends is not buffered without bound: it goes uncounted.
            let _ = ex.answer_stream.framer.finish();
        }
        if end {
            let rest = ex.answer_stream.framer.finish();
            if !rest.is_empty() {
                events.push(rest);
            }
        }
        for raw in events {
            let Some(event) = sse::parse_event(&raw) else {
                continue;
            };
            if !event.data.is_empty() {
                let read = providers::stream_event(ex.endpoint, event.name, &event.data);
                account_stream_event(ex, &read);
            }
        }
    }
}

/// Counts a streamed event's usage report and answer text.
fn account_stream_event(ex: &mut Exchange, read: &providers::StreamEvent) {
    ex.usage.report(read.usage);
    ex.usage.answer_text_bytes += read.deltas.iter().map(|d| d.text.len()).sum::<usize>();
}
