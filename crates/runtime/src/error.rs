//! Errors at the runtime crate boundary.

use varpulis_vpl::Diagnostic;

/// A program that cannot be loaded: every diagnostic plus their compiler-style rendering.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{rendered}")]
pub struct CompileError {
    /// Errors (and nothing else), sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// `diagnostics` rendered with source excerpts.
    pub rendered: String,
}

/// A fault while processing one event, or while checkpointing/restoring.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuntimeError {
    /// Integer overflow (§3).
    #[error("integer overflow in `{0}`")]
    Overflow(&'static str),
    /// Operand or argument of the wrong type.
    #[error("{0}")]
    Type(String),
    /// The per-event loop-step budget was used up.
    #[error("step budget of {0} loop steps exceeded")]
    StepBudget(u64),
    /// User function calls nested deeper than the limit.
    #[error("recursion deeper than {0} calls")]
    Recursion(u32),
    /// Nested calls used more native stack than the engine allows (see `MAX_STACK_BYTES`).
    #[error("calls nested too deeply: more than {0} bytes of stack")]
    StackLimit(usize),
    /// `emit T(…)` evaluated outside `.process`.
    #[error("`emit` outside `.process`")]
    EmitOutsideProcess,
    /// A value too large to build: a string over the byte limit, a collection over the element
    /// limit, or a value whose text form would be (see the `limits` module).
    #[error("value too large: {0}")]
    ValueTooLarge(String),
    /// The strings and collections built while handling one event exceeded the memory budget.
    #[error("memory budget of {0} bytes exceeded")]
    MemoryBudget(usize),
    /// One input event produced more events than allowed.
    #[error("output limit of {0} events per input event exceeded")]
    OutputLimit(usize),
    /// A checkpoint could not be encoded, or the bytes given to restore are corrupt or belong to
    /// another program.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

impl RuntimeError {
    /// Whether the error is a budget (steps, recursion, value size, memory, outputs) running out,
    /// as opposed to a fault of the program's logic (type error, overflow, …).
    pub fn is_budget(&self) -> bool {
        matches!(
            self,
            RuntimeError::StepBudget(_)
                | RuntimeError::Recursion(_)
                | RuntimeError::StackLimit(_)
                | RuntimeError::ValueTooLarge(_)
                | RuntimeError::MemoryBudget(_)
                | RuntimeError::OutputLimit(_)
        )
    }
}

impl From<crate::value::OpError> for RuntimeError {
    fn from(e: crate::value::OpError) -> Self {
        match e {
            crate::value::OpError::Overflow(op) => RuntimeError::Overflow(op),
            crate::value::OpError::DivisionByZero => RuntimeError::Type("division by zero".into()),
            crate::value::OpError::Type(m) => RuntimeError::Type(m),
        }
    }
}
