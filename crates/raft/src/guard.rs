//! Sanity checks on peer RPCs, before openraft sees them (and on the answers to ours).
//!
//! openraft trusts its network: a vote for term `u64::MAX` is granted and stored, after which the
//! next election overflows the term and panics; a forged AppendEntries whose entries are not
//! consecutive trips a debug assertion; a node that is not a member can still ask for votes.
//! Authentication ([`crate::auth`]) keeps strangers out; this module refuses what no correct
//! peer ever sends, whoever sends it:
//!
//! - **absurd terms**: a vote, an append or a snapshot whose term is more than
//!   [`RaftConfig::max_term_jump`](crate::RaftConfig::max_term_jump) (default
//!   [`DEFAULT_MAX_TERM_JUMP`]) above this node's current term. Terms grow by one per election;
//!   a million elections is more than two days of a node campaigning alone every 200 ms, so a
//!   larger jump is a bug or an attack. The same bound applies to the vote in an *answer* to
//!   one of our RPCs (a member we call could be a hostile learner).
//! - **strangers**: a candidate or leader id that is not in this node's membership (voters and
//!   learners), once this node knows a membership at all (a fresh node that is joining knows
//!   none until the leader's first append).
//! - **malformed requests**: entries that are not consecutive after `prev_log_id`, log ids or
//!   commit points from a term above the sender's own vote, a vote that names no node.
//!
//! Every check is a pure function of the request and a [`LocalView`] of this node.

use std::collections::BTreeSet;

use openraft::raft::{AppendEntriesRequest, VoteRequest};
use varpulis_api::Code;

use crate::types::{LogId, NodeId, SnapshotMeta, TypeConfig, Vote};

/// Default of `max_term_jump`: how far above the current term a peer's term may be.
pub const DEFAULT_MAX_TERM_JUMP: u64 = 1_000_000;

/// What this node knows when it judges a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalView {
    /// This node's current term.
    pub current_term: u64,
    /// Every node of this node's effective membership (voters and learners); empty when this
    /// node knows no membership yet.
    pub members: BTreeSet<NodeId>,
    /// Largest accepted term jump.
    pub max_term_jump: u64,
}

/// Why a peer request (or answer) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The term is absurdly far above this node's.
    #[error(
        "term {given} is more than {max_jump} above this node's term {current}: refused \
         (raft max_term_jump)"
    )]
    TermTooFarAhead {
        /// Term in the request.
        given: u64,
        /// This node's term.
        current: u64,
        /// The bound.
        max_jump: u64,
    },
    /// The sender is not a member of this node's group.
    #[error("node {0} is not a member of this raft group: refused")]
    NotAMember(NodeId),
    /// The request is not well-formed.
    #[error("malformed raft request: {0}")]
    Malformed(String),
}

impl Refusal {
    /// Stable snake_case code for the JSON error body.
    pub fn code(&self) -> Code {
        match self {
            Refusal::TermTooFarAhead { .. } => Code::TermOutOfRange,
            Refusal::NotAMember(_) => Code::NotAMember,
            Refusal::Malformed(_) => Code::BadRequest,
        }
    }
}

fn log_term(log_id: &LogId) -> u64 {
    log_id.leader_id.term
}

impl LocalView {
    /// Refuses `term` when it is more than `max_term_jump` above the current term.
    pub fn check_term(&self, term: u64) -> Result<(), Refusal> {
        if term > self.current_term.saturating_add(self.max_term_jump) {
            return Err(Refusal::TermTooFarAhead {
                given: term,
                current: self.current_term,
                max_jump: self.max_term_jump,
            });
        }
        Ok(())
    }

    /// Checks the sender's vote: a sane term, a node id, and a member of the group.
    fn check_sender(&self, vote: &Vote) -> Result<NodeId, Refusal> {
        self.check_term(vote.leader_id().get_term())?;
        let Some(sender) = vote.leader_id().voted_for() else {
            return Err(Refusal::Malformed("the vote names no node".into()));
        };
        if !self.members.is_empty() && !self.members.contains(&sender) {
            return Err(Refusal::NotAMember(sender));
        }
        Ok(sender)
    }

    /// Checks a `/raft/vote` request.
    pub fn check_vote(&self, req: &VoteRequest<NodeId>) -> Result<(), Refusal> {
        self.check_sender(&req.vote)?;
        let term = req.vote.leader_id().get_term();
        if let Some(last) = &req.last_log_id {
            // A candidate's log cannot hold entries of a term it has not reached.
            if log_term(last) > term {
                return Err(Refusal::Malformed(format!(
                    "last log id term {} is above the candidate's term {term}",
                    log_term(last)
                )));
            }
        }
        Ok(())
    }

    /// Checks a `/raft/append` request.
    pub fn check_append(&self, req: &AppendEntriesRequest<TypeConfig>) -> Result<(), Refusal> {
        self.check_sender(&req.vote)?;
        let term = req.vote.leader_id().get_term();
        let above = |what: &str, id: &LogId| -> Result<(), Refusal> {
            if log_term(id) > term {
                return Err(Refusal::Malformed(format!(
                    "{what} {id} has a term above the leader's term {term}"
                )));
            }
            Ok(())
        };
        if let Some(prev) = &req.prev_log_id {
            above("prev_log_id", prev)?;
        }
        if let Some(commit) = &req.leader_commit {
            above("leader_commit", commit)?;
        }
        let mut expected_index = match &req.prev_log_id {
            None => Some(0),
            Some(p) => p.index.checked_add(1),
        };
        let mut last_term = req.prev_log_id.as_ref().map_or(0, log_term);
        for entry in &req.entries {
            let id = &entry.log_id;
            if Some(id.index) != expected_index {
                return Err(Refusal::Malformed(format!(
                    "entry {id} is not consecutive after {:?}",
                    req.prev_log_id
                )));
            }
            above("entry", id)?;
            if log_term(id) < last_term {
                return Err(Refusal::Malformed(format!(
                    "entry {id} has a term below the entry before it ({last_term})"
                )));
            }
            last_term = log_term(id);
            expected_index = id.index.checked_add(1);
        }
        Ok(())
    }

    /// Checks a snapshot transfer (whole or a chunk) from the leader `vote`.
    pub fn check_snapshot(&self, vote: &Vote, meta: &SnapshotMeta) -> Result<(), Refusal> {
        self.check_sender(vote)?;
        let term = vote.leader_id().get_term();
        if let Some(last) = &meta.last_log_id {
            if log_term(last) > term {
                return Err(Refusal::Malformed(format!(
                    "snapshot last log id {last} has a term above the leader's term {term}"
                )));
            }
        }
        Ok(())
    }
}

/// Checks the vote in an answer to one of our RPCs sent with `sent`: a peer may answer with a
/// higher vote (we then step down), but not with an absurd one.
pub fn check_answer_vote(sent: &Vote, answered: &Vote, max_term_jump: u64) -> Result<(), Refusal> {
    let current = sent.leader_id().get_term();
    LocalView {
        current_term: current,
        members: BTreeSet::new(),
        max_term_jump,
    }
    .check_term(answered.leader_id().get_term())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};
    use varpulis_cluster::Command;

    use crate::types::Entry;

    fn view() -> LocalView {
        LocalView {
            current_term: 5,
            members: BTreeSet::from([1, 2, 3]),
            max_term_jump: 1000,
        }
    }

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(Command::Noop),
        }
    }

    fn append(
        vote: Vote,
        prev: Option<LogId>,
        entries: Vec<Entry>,
    ) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote,
            prev_log_id: prev,
            entries,
            leader_commit: None,
        }
    }

    #[test]
    fn the_term_bomb_is_refused() {
        let v = view();
        let bomb = VoteRequest::new(Vote::new(u64::MAX, 2), Some(log_id(u64::MAX, u64::MAX)));
        assert!(matches!(
            v.check_vote(&bomb),
            Err(Refusal::TermTooFarAhead {
                given: u64::MAX,
                current: 5,
                ..
            })
        ));
        let far = append(Vote::new_committed(1006, 2), None, vec![]);
        assert_eq!(
            v.check_append(&far).unwrap_err().code(),
            "term_out_of_range"
        );
        // Right at the bound is still a term a partitioned node could have reached.
        let edge = VoteRequest::new(Vote::new(1005, 2), Some(log_id(4, 10)));
        assert_eq!(v.check_vote(&edge), Ok(()));
    }

    #[test]
    fn a_huge_current_term_does_not_overflow_the_bound() {
        let v = LocalView {
            current_term: u64::MAX - 1,
            ..view()
        };
        assert_eq!(v.check_term(u64::MAX), Ok(()));
    }

    #[test]
    fn strangers_are_refused_once_a_membership_is_known() {
        let v = view();
        let req = VoteRequest::new(Vote::new(6, 9), None);
        assert_eq!(v.check_vote(&req), Err(Refusal::NotAMember(9)));
        let req = append(Vote::new_committed(5, 9), None, vec![]);
        assert_eq!(v.check_append(&req), Err(Refusal::NotAMember(9)));
        // A fresh (joining) node knows no membership yet: the leader's first append must pass.
        let fresh = LocalView {
            members: BTreeSet::new(),
            ..view()
        };
        assert_eq!(fresh.check_append(&req), Ok(()));
    }

    #[test]
    fn malformed_appends_are_refused() {
        let v = view();
        let leader = Vote::new_committed(5, 1);
        let gap = append(leader, Some(log_id(5, 10)), vec![entry(5, 12)]);
        assert!(matches!(v.check_append(&gap), Err(Refusal::Malformed(_))));
        let future = append(leader, Some(log_id(5, 10)), vec![entry(6, 11)]);
        assert!(matches!(
            v.check_append(&future),
            Err(Refusal::Malformed(_))
        ));
        let backwards = append(
            leader,
            Some(log_id(4, 10)),
            vec![entry(5, 11), entry(4, 12)],
        );
        assert!(matches!(
            v.check_append(&backwards),
            Err(Refusal::Malformed(_))
        ));
        let mut commit = append(leader, None, vec![]);
        commit.leader_commit = Some(log_id(7, 3));
        assert!(matches!(
            v.check_append(&commit),
            Err(Refusal::Malformed(_))
        ));
        let ok = append(
            leader,
            Some(log_id(4, 10)),
            vec![entry(4, 11), entry(5, 12), entry(5, 13)],
        );
        assert_eq!(v.check_append(&ok), Ok(()));
        let first = append(leader, None, vec![entry(0, 0), entry(5, 1)]);
        assert_eq!(v.check_append(&first), Ok(()));
        // An index at the end of u64 cannot be followed by anything (no overflow either).
        let edge = append(leader, Some(log_id(5, u64::MAX)), vec![entry(5, 0)]);
        assert!(matches!(v.check_append(&edge), Err(Refusal::Malformed(_))));
        let edge = append(leader, Some(log_id(5, u64::MAX)), vec![]);
        assert_eq!(v.check_append(&edge), Ok(()));
    }

    #[test]
    fn a_candidate_log_from_the_future_is_refused() {
        let req = VoteRequest::new(Vote::new(6, 2), Some(log_id(7, 3)));
        assert!(matches!(
            view().check_vote(&req),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn absurd_answers_are_refused() {
        let sent = Vote::new_committed(5, 1);
        assert!(check_answer_vote(&sent, &Vote::new(6, 2), 1000).is_ok());
        assert!(check_answer_vote(&sent, &Vote::new(u64::MAX, 2), 1000).is_err());
    }
}
