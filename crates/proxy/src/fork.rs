//! The response context of a forked request (RFC 3261 §16.7), without I/O:
//! which responses are forwarded at once, which are kept, which one is
//! finally sent upstream, and when the other branches are cancelled.

/// State of one branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Branch {
    /// Sent, no response yet.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response (or a failure counted as one) arrived.
    Done(u16),
}

/// What to do with a response that just arrived on a branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Send it upstream now (provisional other than 100, or 2xx).
    pub forward: bool,
    /// Cancel every other pending branch (a 2xx or 6xx arrived).
    pub cancel_others: bool,
}

/// All branches of one proxied request.
#[derive(Debug, Default)]
pub struct ResponseContext {
    branches: Vec<Branch>,
    /// Index and status of the best final non-2xx response so far.
    best: Option<(usize, u16)>,
    answered: bool,
    global_failure: bool,
}

impl ResponseContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a new branch; returns its index.
    pub fn add_branch(&mut self) -> usize {
        self.branches.push(Branch::Trying);
        self.branches.len() - 1
    }

    /// A 2xx has been forwarded upstream.
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// A 6xx arrived: no new branches may start (§16.7 step 5).
    pub fn stop_forking(&self) -> bool {
        self.answered || self.global_failure
    }

    /// Branches still without a final response.
    pub fn pending(&self) -> impl Iterator<Item = usize> + '_ {
        self.branches
            .iter()
            .enumerate()
            .filter(|(_, b)| !matches!(b, Branch::Done(_)))
            .map(|(i, _)| i)
    }

    /// Whether every branch has a final response.
    pub fn complete(&self) -> bool {
        self.pending().next().is_none()
    }

    /// Whether branch `i` has had a provisional response.
    pub fn proceeding(&self, i: usize) -> bool {
        matches!(self.branches.get(i), Some(Branch::Proceeding))
    }

    /// A response with `status` arrived on branch `i`.
    pub fn on_response(&mut self, i: usize, status: u16) -> Verdict {
        let Some(branch) = self.branches.get_mut(i) else {
            return Verdict::default();
        };
        match status {
            100 => {
                if *branch == Branch::Trying {
                    *branch = Branch::Proceeding;
                }
                Verdict::default()
            }
            101..=199 => {
                if *branch == Branch::Trying {
                    *branch = Branch::Proceeding;
                }
                // Provisionals after the request was answered are useless.
                Verdict {
                    forward: !self.answered && matches!(branch, Branch::Proceeding),
                    cancel_others: false,
                }
            }
            200..=299 => {
                // Every 2xx is forwarded, even late ones from other branches.
                *branch = Branch::Done(status);
                let first = !self.answered;
                self.answered = true;
                Verdict {
                    forward: true,
                    cancel_others: first,
                }
            }
            _ => {
                if matches!(branch, Branch::Done(_)) {
                    return Verdict::default();
                }
                *branch = Branch::Done(status);
                let global = status >= 600;
                let first_global = global && !self.global_failure;
                self.global_failure |= global;
                if self.best.is_none_or(|(_, b)| rank(status) < rank(b)) {
                    self.best = Some((i, status));
                }
                Verdict {
                    forward: false,
                    cancel_others: first_global,
                }
            }
        }
    }

    /// Branch `i` failed without a response: timeout counts as 408,
    /// transport failure as 503 (RFC 3261 §16.7, §16.8).
    pub fn on_failure(&mut self, i: usize, status: u16) -> Verdict {
        self.on_response(i, status)
    }

    /// The branch whose final response goes upstream, once complete and
    /// nothing was answered with 2xx; `None` when every branch failed
    /// without a response (send 408).
    pub fn best(&self) -> Option<(usize, u16)> {
        if self.answered {
            return None;
        }
        self.best
    }
}

/// Lower is better (§16.7 step 6): any 6xx; else the lowest class, and
/// within 4xx the responses that help a resubmission first.
fn rank(status: u16) -> (u8, u8, u16) {
    let class = (status / 100) as u8;
    let class_rank = if class == 6 { 0 } else { class };
    let helpful = matches!(status, 401 | 407 | 415 | 420 | 484);
    // 503 from downstream is least useful: it says nothing about the callee.
    let demoted = status == 503 || status == 408;
    (
        class_rank,
        if helpful {
            0
        } else if demoted {
            2
        } else {
            1
        },
        status,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisional_and_2xx_are_forwarded_and_2xx_cancels_the_rest() {
        let mut ctx = ResponseContext::new();
        let a = ctx.add_branch();
        let b = ctx.add_branch();
        assert_eq!(ctx.on_response(a, 100), Verdict::default());
        assert!(ctx.on_response(a, 180).forward);
        let v = ctx.on_response(b, 200);
        assert_eq!(
            v,
            Verdict {
                forward: true,
                cancel_others: true
            }
        );
        assert_eq!(ctx.pending().collect::<Vec<_>>(), [a]);
        // The cancelled branch's 487 is absorbed; a second 2xx still goes up.
        assert_eq!(ctx.on_response(a, 487), Verdict::default());
        assert!(ctx.complete());
        assert_eq!(ctx.best(), None);
        assert!(!ctx.on_response(a, 183).forward);
    }

    #[test]
    fn best_final_response_selection() {
        let mut ctx = ResponseContext::new();
        let a = ctx.add_branch();
        let b = ctx.add_branch();
        let c = ctx.add_branch();
        ctx.on_response(a, 486);
        ctx.on_failure(b, 408);
        ctx.on_response(c, 404);
        assert!(ctx.complete());
        assert_eq!(ctx.best(), Some((c, 404)));
    }

    #[test]
    fn six_xx_stops_forking_and_wins() {
        let mut ctx = ResponseContext::new();
        let a = ctx.add_branch();
        let b = ctx.add_branch();
        ctx.on_response(a, 404);
        let v = ctx.on_response(b, 603);
        assert!(v.cancel_others && !v.forward);
        assert!(ctx.stop_forking());
        assert_eq!(ctx.best(), Some((b, 603)));
    }

    #[test]
    fn challenges_are_preferred_and_503_is_last() {
        let mut ctx = ResponseContext::new();
        let a = ctx.add_branch();
        let b = ctx.add_branch();
        let c = ctx.add_branch();
        ctx.on_response(a, 503);
        ctx.on_response(b, 486);
        ctx.on_response(c, 407);
        assert_eq!(ctx.best(), Some((c, 407)));
        let mut ctx = ResponseContext::new();
        let a = ctx.add_branch();
        let b = ctx.add_branch();
        ctx.on_response(a, 503);
        ctx.on_response(b, 500);
        assert_eq!(ctx.best(), Some((b, 500)));
    }
}
