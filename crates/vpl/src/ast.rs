//! Abstract syntax tree of a VPL program.
//!
//! Every node carries a [`Span`]. The tree is deliberately close to the surface syntax:
//!
//! * Stream operators are **generic**: `.name(args…)` becomes a [`StreamOp`] with a name and a list
//!   of (optionally named) [`Arg`]s; [`StreamOp::kind`] classifies the known names into [`OpKind`].
//!   Adding an operator (Tier 2: `.window .aggregate .partition_by .having .within .not`) needs no
//!   change to the tree, only to the checker and runtime.
//! * Sequence steps (`A as a -> B where c as b`, Tier 2) are kept apart from the operator chain in
//!   [`StreamDecl::steps`], because the spec says they define the pattern wherever written.
//! * Method-call syntax `e.f(a)` is desugared by the parser to `f(e, a)` ([`ExprKind::Call`] with
//!   `method: true`), so evaluators see one call form.
//! * `T.from(Conn, …)` directly after the source is folded into [`Source::from`].
//!
//! Enums that later tiers will grow are `#[non_exhaustive]`; match them with a `_` arm.

pub use crate::span::Span;

/// A name with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    /// The identifier text.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

impl Ident {
    /// Builds an identifier.
    pub fn new(name: impl Into<String>, span: Span) -> Self {
        Ident {
            name: name.into(),
            span,
        }
    }

    /// The identifier text.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

/// A whole program: top-level items in source order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Program {
    /// Declarations and top-level statements, in the order written.
    pub items: Vec<Item>,
}

impl Program {
    /// Iterates over the stream declarations.
    pub fn streams(&self) -> impl Iterator<Item = &StreamDecl> {
        self.items.iter().filter_map(|i| match i {
            Item::Stream(s) => Some(s),
            _ => None,
        })
    }

    /// Iterates over the event declarations.
    pub fn events(&self) -> impl Iterator<Item = &EventDecl> {
        self.items.iter().filter_map(|i| match i {
            Item::Event(e) => Some(e),
            _ => None,
        })
    }

    /// Iterates over the function declarations.
    pub fn functions(&self) -> impl Iterator<Item = &FnDecl> {
        self.items.iter().filter_map(|i| match i {
            Item::Fn(f) => Some(f),
            _ => None,
        })
    }

    /// Iterates over the connector declarations.
    pub fn connectors(&self) -> impl Iterator<Item = &ConnectorDecl> {
        self.items.iter().filter_map(|i| match i {
            Item::Connector(c) => Some(c),
            _ => None,
        })
    }

    /// The first stream declared with `name`.
    pub fn stream(&self, name: &str) -> Option<&StreamDecl> {
        self.streams().find(|s| s.name.name == name)
    }

    /// The first event type declared with `name`.
    pub fn event(&self, name: &str) -> Option<&EventDecl> {
        self.events().find(|e| e.name.name == name)
    }

    /// The first function declared with `name`.
    pub fn function(&self, name: &str) -> Option<&FnDecl> {
        self.functions().find(|f| f.name.name == name)
    }

    /// Iterates over the pattern declarations.
    pub fn patterns(&self) -> impl Iterator<Item = &PatternDecl> {
        self.items.iter().filter_map(|i| match i {
            Item::Pattern(p) => Some(p),
            _ => None,
        })
    }

    /// The first pattern declared with `name`.
    pub fn pattern(&self, name: &str) -> Option<&PatternDecl> {
        self.patterns().find(|p| p.name.name == name)
    }

    /// Iterates over the context declarations.
    pub fn contexts(&self) -> impl Iterator<Item = &ContextDecl> {
        self.items.iter().filter_map(|i| match i {
            Item::Context(c) => Some(c),
            _ => None,
        })
    }
}

/// One top-level item.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Item {
    /// `event Name [extends Base]:` with typed fields.
    Event(EventDecl),
    /// `connector Name = kind(k: v, …)`.
    Connector(ConnectorDecl),
    /// `context name [(cores: [..])]`.
    Context(ContextDecl),
    /// `fn name(params) [-> T]:` block.
    Fn(FnDecl),
    /// `stream Name [: Stream<T>] = Source ops…`.
    Stream(StreamDecl),
    /// Top-level `let`/`var`/`const`.
    Binding(Binding),
    /// Top-level `x := e`.
    Assign(Assign),
    /// `pattern Name = …` (Tier 3, §8).
    Pattern(PatternDecl),
    /// `type Name = T` (Tier 3): an alias usable in type annotations.
    Type(TypeDecl),
}

impl Item {
    /// The span of the whole item.
    pub fn span(&self) -> Span {
        match self {
            Item::Event(d) => d.span,
            Item::Connector(d) => d.span,
            Item::Context(d) => d.span,
            Item::Fn(d) => d.span,
            Item::Stream(d) => d.span,
            Item::Binding(d) => d.span,
            Item::Assign(d) => d.span,
            Item::Pattern(d) => d.span,
            Item::Type(d) => d.span,
        }
    }
}

/// `type Name = T`.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeDecl {
    /// The alias.
    pub name: Ident,
    /// What it stands for.
    pub ty: TypeExpr,
    /// The whole declaration.
    pub span: Span,
}

/// `pattern Name = <pattern> [within d] [partition by k]` (§8).
#[derive(Debug, Clone, PartialEq)]
pub struct PatternDecl {
    /// The pattern's name; streams use it as a source.
    pub name: Ident,
    /// What to match.
    pub body: PatternExpr,
    /// `within d` clauses in written order (the pattern's and its items'); the last one bounds
    /// the whole pattern.
    pub within: Vec<Expr>,
    /// `partition by k`.
    pub partition_by: Option<Ident>,
    /// The whole declaration.
    pub span: Span,
}

/// A pattern: an item, `SEQ(…)`/`->`, `AND(…)`, `OR(…)` or `NOT item`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternExpr {
    /// The shape.
    pub kind: PatternKind,
    /// Where it was written.
    pub span: Span,
}

/// Pattern shapes (§8).
#[derive(Debug, Clone, PartialEq)]
pub enum PatternKind {
    /// One event type with quantifier, filter and alias.
    Item(PatternItem),
    /// `SEQ(a, b, …)` or `a -> b -> …`: in this order.
    Seq(Vec<PatternExpr>),
    /// `AND(a, b, …)`: all of them, in any order.
    And(Vec<PatternExpr>),
    /// `OR(a, b, …)`: any one of them.
    Or(Vec<PatternExpr>),
    /// `NOT T [where c]`: no such event (inside a sequence; until the deadline when last).
    Not(PatternItem),
}

/// How many events one pattern item matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantifier {
    /// Exactly one.
    One,
    /// `T+` / `all T`: one or more.
    Plus,
    /// `T*`: zero or more.
    Star,
    /// `T?`: zero or one.
    Optional,
}

/// `[all] T[+|*|?] [where c] [as a]` (also `T[c]` for `T where c`).
#[derive(Debug, Clone, PartialEq)]
pub struct PatternItem {
    /// Event type (or stream) matched.
    pub event: Ident,
    /// Repetition.
    pub quant: Quantifier,
    /// Filter over the candidate's fields and earlier captures.
    pub filter: Option<Expr>,
    /// Capture name (default: the type name).
    pub alias: Option<Ident>,
    /// Written `T+.increasing(f)` / `all T.decreasing(f)` (see [`SeqStep::trend`]).
    pub trend: bool,
    /// The whole item.
    pub span: Span,
}

impl PatternItem {
    /// The name under which later items and operators read the captured event.
    pub fn capture(&self) -> &Ident {
        self.alias.as_ref().unwrap_or(&self.event)
    }
}

impl PatternExpr {
    /// Every item (negated ones included) in written order.
    pub fn items(&self) -> Vec<&PatternItem> {
        let mut out = Vec::new();
        self.collect_items(&mut out);
        out
    }

    /// The items that capture an event (every item but the negated ones), in written order.
    pub fn captures(&self) -> Vec<&PatternItem> {
        let mut out = Vec::new();
        self.collect_captures(&mut out);
        out
    }

    fn collect_captures<'a>(&'a self, out: &mut Vec<&'a PatternItem>) {
        match &self.kind {
            PatternKind::Item(i) => out.push(i),
            PatternKind::Not(_) => {}
            PatternKind::Seq(kids) | PatternKind::And(kids) | PatternKind::Or(kids) => {
                for k in kids {
                    k.collect_captures(out);
                }
            }
        }
    }

    fn collect_items<'a>(&'a self, out: &mut Vec<&'a PatternItem>) {
        match &self.kind {
            PatternKind::Item(i) | PatternKind::Not(i) => out.push(i),
            PatternKind::Seq(kids) | PatternKind::And(kids) | PatternKind::Or(kids) => {
                for k in kids {
                    k.collect_items(out);
                }
            }
        }
    }
}

/// A type annotation.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeExpr {
    /// The shape of the type.
    pub kind: TypeKind,
    /// Where it was written.
    pub span: Span,
}

/// The shapes a type annotation can take (§3).
#[derive(Debug, Clone, PartialEq)]
pub enum TypeKind {
    /// A named type: `int float bool str timestamp duration null` or a user/event type.
    Named(Ident),
    /// `[T]`.
    Array(Box<TypeExpr>),
    /// `{K: V}`.
    Map(Box<TypeExpr>, Box<TypeExpr>),
    /// `{x: float, y: float}`: a map with these keys (the existing product's record types;
    /// written with a comma, or one lower-case key that is not a type name).
    Record(Vec<(Ident, TypeExpr)>),
    /// `(A, B, …)`.
    Tuple(Vec<TypeExpr>),
    /// `T?`.
    Optional(Box<TypeExpr>),
    /// `Stream<T>`.
    Stream(Box<TypeExpr>),
}

/// `event Name [extends Base]:` followed by an indented block of `field: Type` lines.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDecl {
    /// The event type name.
    pub name: Ident,
    /// `extends Base` (Tier 3), if written.
    pub extends: Option<Ident>,
    /// Declared fields in order.
    pub fields: Vec<FieldDecl>,
    /// The whole declaration.
    pub span: Span,
}

/// One `name: Type` line of an event declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDecl {
    /// Field name.
    pub name: Ident,
    /// Declared type.
    pub ty: TypeExpr,
    /// The whole line.
    pub span: Span,
}

/// `connector Name = kind(param: value, …)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorDecl {
    /// Connector name, referenced by `.from` / `.to`.
    pub name: Ident,
    /// Connector kind (`mqtt`, `kafka`, …).
    pub kind: Ident,
    /// Parameters as written (normally all named).
    pub params: Vec<Arg>,
    /// The whole declaration.
    pub span: Span,
}

/// `context name [(param: value, …)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextDecl {
    /// Context name.
    pub name: Ident,
    /// Parameters (e.g. `cores: [2, 3]`).
    pub params: Vec<Arg>,
    /// The whole declaration.
    pub span: Span,
}

/// `fn name(p: T, …) [-> T]:` with a statement block.
#[derive(Debug, Clone, PartialEq)]
pub struct FnDecl {
    /// Function name.
    pub name: Ident,
    /// Parameters in order.
    pub params: Vec<Param>,
    /// Declared return type.
    pub ret: Option<TypeExpr>,
    /// The body.
    pub body: Block,
    /// The whole declaration.
    pub span: Span,
}

/// One function parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Parameter name.
    pub name: Ident,
    /// Declared type, if any.
    pub ty: Option<TypeExpr>,
    /// The whole parameter.
    pub span: Span,
}

/// `stream Name [: Stream<T>] = Source ops…`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDecl {
    /// Stream name; its outputs are typed with it.
    pub name: Ident,
    /// Declared type (`: Stream<T>`), if any.
    pub ty: Option<TypeExpr>,
    /// Where events come from.
    pub source: Source,
    /// Sequence steps `-> [all] T [where c] [as a]` (Tier 2), in written order; empty for plain streams.
    pub steps: Vec<SeqStep>,
    /// The operator chain in written order (excluding a `.from` folded into the source).
    pub ops: Vec<StreamOp>,
    /// The whole declaration.
    pub span: Span,
}

/// The source of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Which kind of source.
    pub kind: SourceKind,
    /// `.from(Conn, topic: …)` written directly after the source.
    pub from: Option<FromClause>,
    /// The whole source (without `.from`).
    pub span: Span,
}

/// Source kinds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SourceKind {
    /// `T` or `T as a`: every event of type (or stream) `T`.
    Named {
        /// Event type or stream name.
        name: Ident,
        /// `as a` binding.
        alias: Option<Ident>,
        /// `T where c [as a] -> …`: the first step's filter of a sequence (a stream without
        /// steps gets a leading `.where(c)` instead, so this is `None` there).
        filter: Option<Box<Expr>>,
    },
    /// `all T [where c] [as a]`: a sequence whose first step is a Kleene group (Tier 2).
    All {
        /// Event type.
        name: Ident,
        /// `as a` binding.
        alias: Option<Ident>,
        /// `where` filter of the group.
        filter: Option<Box<Expr>>,
        /// Written `all T.increasing(f)` / `.decreasing(f)` (see [`SeqStep::trend`]).
        trend: bool,
    },
    /// `merge(A, stream S = B .where(c), …)`: union of the inputs (Tier 2).
    Merge(Vec<SubStream>),
    /// `join(A, stream S = B .on(c), …)`: correlation join of the inputs (Tier 2); also the
    /// existing product's outer joins `left_join(…)`, `right_join(…)`, `full_join(…)`.
    Join(Vec<SubStream>, JoinKind),
    /// `timer(period[, initial_delay: d])`: a tick event `Timer_<Stream>` every period (Tier 3).
    Timer(Vec<Arg>),
}

/// Built-in type names (§3).
pub const BASIC_TYPES: &[&str] = &[
    "int",
    "float",
    "bool",
    "str",
    "timestamp",
    "duration",
    "null",
];

/// Which inputs of a join produce an output even without partners (their missing partners'
/// fields are `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// `join(…)`: only matched events.
    Inner,
    /// `left_join(…)`: every event of the first input.
    Left,
    /// `right_join(…)`: every event of the last input.
    Right,
    /// `full_join(…)`: every event of every input.
    Full,
}

impl JoinKind {
    /// Whether input `i` of `n` is preserved (produces an output even without partners).
    pub fn preserves(self, i: usize, n: usize) -> bool {
        match self {
            JoinKind::Inner => false,
            JoinKind::Left => i == 0,
            JoinKind::Right => i + 1 == n,
            JoinKind::Full => true,
        }
    }
}

/// The events a `T …` or `all T …` source reads, as the first step of a sequence.
#[derive(Debug, Clone, Copy)]
pub struct EventSource<'a> {
    /// Written `all T` (a Kleene group).
    pub all: bool,
    /// Event type or stream name.
    pub name: &'a Ident,
    /// `as a` binding.
    pub alias: Option<&'a Ident>,
    /// `where` filter.
    pub filter: Option<&'a Expr>,
    /// Written `all T.increasing(f)` / `.decreasing(f)`.
    pub trend: bool,
}

impl SourceKind {
    /// The events of a `Named` or `All` source; `None` for `merge`, `join` and `timer`.
    pub fn event_source(&self) -> Option<EventSource<'_>> {
        let (all, name, alias, filter, trend) = match self {
            SourceKind::Named {
                name,
                alias,
                filter,
            } => (false, name, alias, filter, false),
            SourceKind::All {
                name,
                alias,
                filter,
                trend,
            } => (true, name, alias, filter, *trend),
            _ => return None,
        };
        Some(EventSource {
            all,
            name,
            alias: alias.as_ref(),
            filter: filter.as_deref(),
            trend,
        })
    }

    /// Every event type or stream name this source reads.
    pub fn input_names(&self) -> Vec<&Ident> {
        match self {
            SourceKind::Named { name, .. } | SourceKind::All { name, .. } => vec![name],
            SourceKind::Merge(inputs) | SourceKind::Join(inputs, _) => {
                inputs.iter().map(|i| &i.source).collect()
            }
            SourceKind::Timer(_) => Vec::new(),
        }
    }
}

/// One input of `merge(…)` / `join(…)`: `A` or `stream S = A .op(…) …` (Tier 2).
#[derive(Debug, Clone, PartialEq)]
pub struct SubStream {
    /// The name given with `stream S =`, if any.
    pub name: Option<Ident>,
    /// Event type or stream read.
    pub source: Ident,
    /// Operators applied to this input (`.where`, `.on`).
    pub ops: Vec<StreamOp>,
    /// The whole input.
    pub span: Span,
}

/// `.from(Conn, topic: "…", …)` on a source.
#[derive(Debug, Clone, PartialEq)]
pub struct FromClause {
    /// The connector.
    pub connector: Ident,
    /// Remaining arguments (usually `topic:`).
    pub args: Vec<Arg>,
    /// The whole `.from(…)`.
    pub span: Span,
}

/// One step of a sequence: `-> [all] T [where c] [as a]` (Tier 2).
#[derive(Debug, Clone, PartialEq)]
pub struct SeqStep {
    /// `all` (Kleene) step.
    pub all: bool,
    /// Event type of the step.
    pub event: Ident,
    /// `where` filter.
    pub filter: Option<Expr>,
    /// `as` alias.
    pub alias: Option<Ident>,
    /// Written `all T.increasing(f)` / `.decreasing(f)` (the filter holds the comparison): the
    /// stream emits in `.longest()` mode unless it says `.each()`.
    pub trend: bool,
    /// The whole step.
    pub span: Span,
}

/// A stream operator `.name(args…)`, kept generic so new operators need no AST change.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamOp {
    /// Operator name as written (`where`, `emit`, …).
    pub name: Ident,
    /// Arguments in order.
    pub args: Vec<Arg>,
    /// `.emit as T(…)`: the output type (Tier 3).
    pub emit_type: Option<Ident>,
    /// The arguments could not be parsed (only for operators the language does not have: the
    /// checker reports the unknown operator instead of a syntax error).
    pub unparsed: bool,
    /// The whole `.name(…)`.
    pub span: Span,
}

/// Classification of operator names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpKind {
    /// `.where(e)` or its alias `.filter(e)`.
    Where,
    /// `.select(f, g: e, …)`.
    Select,
    /// `.emit(n: e, …)`.
    Emit,
    /// `.process(f(…))`.
    Process,
    /// `.context(c)`.
    Context,
    /// `.from(Conn, …)` not directly after the source.
    From,
    /// `.to(Conn[, topic: …])`.
    To,
    /// `.window(…)` (Tier 2).
    Window,
    /// `.aggregate(…)` (Tier 2).
    Aggregate,
    /// `.partition_by(k)` (Tier 2).
    PartitionBy,
    /// `.having(e)` (Tier 2).
    Having,
    /// `.within(d)` (Tier 2).
    Within,
    /// `.not(T where c)` (Tier 2).
    Not,
    /// `.on(c)`: join condition (Tier 2).
    On,
    /// `.distinct([e])` (Tier 3).
    Distinct,
    /// `.limit(n)` (Tier 3).
    Limit,
    /// `.first()` = `.limit(1)` (Tier 3).
    First,
    /// `.print(e, …)` (Tier 3).
    Print,
    /// `.log(level:, message:, data:)` (Tier 3).
    Log,
    /// `.watermark(out_of_order: d)` (Tier 3, §6.4).
    Watermark,
    /// `.allowed_lateness(d)` (Tier 3, §6.4).
    AllowedLateness,
    /// `.pattern(name: events => e)` on a window (Tier 3).
    WindowPattern,
    /// `.trend_aggregate(…)` over a Kleene sequence (Tier 3).
    TrendAggregate,
    /// `.alert(message: "…", webhook: url)`: the existing product's notification (logged).
    Alert,
    /// A selection or emission mode of a sequence or pattern: `.strict() .stnm() .stam()`,
    /// `.each() .longest() .subsets()` (the existing product's operators).
    MatchMode,
    /// Anything else.
    Other,
}

impl OpKind {
    /// Classifies an operator name.
    pub fn from_name(name: &str) -> OpKind {
        match name {
            "where" | "filter" => OpKind::Where,
            "select" => OpKind::Select,
            "emit" => OpKind::Emit,
            "process" => OpKind::Process,
            "context" => OpKind::Context,
            "from" => OpKind::From,
            "to" => OpKind::To,
            "window" => OpKind::Window,
            "aggregate" => OpKind::Aggregate,
            "partition_by" => OpKind::PartitionBy,
            "having" => OpKind::Having,
            "within" => OpKind::Within,
            "not" => OpKind::Not,
            "on" => OpKind::On,
            "distinct" => OpKind::Distinct,
            "limit" => OpKind::Limit,
            "first" => OpKind::First,
            "print" => OpKind::Print,
            "log" => OpKind::Log,
            "watermark" => OpKind::Watermark,
            "allowed_lateness" => OpKind::AllowedLateness,
            "pattern" => OpKind::WindowPattern,
            "trend_aggregate" => OpKind::TrendAggregate,
            "strict" | "stnm" | "stam" | "each" | "longest" | "subsets" => OpKind::MatchMode,
            "alert" => OpKind::Alert,
            _ => OpKind::Other,
        }
    }
}

impl StreamOp {
    /// The classified operator.
    pub fn kind(&self) -> OpKind {
        OpKind::from_name(&self.name.name)
    }

    /// Positional (unnamed) arguments in order.
    pub fn positional(&self) -> impl Iterator<Item = &Expr> {
        self.args
            .iter()
            .filter(|a| a.name.is_none())
            .map(|a| &a.value)
    }

    /// The value of the named argument `name`, if present.
    pub fn named(&self, name: &str) -> Option<&Expr> {
        self.args
            .iter()
            .find(|a| a.name.as_ref().is_some_and(|n| n.name == name))
            .map(|a| &a.value)
    }

    /// The first positional argument.
    pub fn first_positional(&self) -> Option<&Expr> {
        self.positional().next()
    }
}

/// An argument `[name:] value` of an operator, connector, context or `emit`.
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    /// The name before `:`, if any.
    pub name: Option<Ident>,
    /// The value.
    pub value: Expr,
    /// The whole argument.
    pub span: Span,
}

impl Arg {
    /// The field name this argument produces in `.select`/`.emit`: its name, or a bare identifier
    /// value (`f` means `f: f`).
    pub fn field_name(&self) -> Option<&str> {
        match (&self.name, &self.value.kind) {
            (Some(n), _) => Some(&n.name),
            (None, ExprKind::Name(id)) => Some(&id.name),
            _ => None,
        }
    }
}

/// A statement block (the body of `fn`, `if`, `while`, `for`).
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Statements in order.
    pub stmts: Vec<Stmt>,
    /// The whole block.
    pub span: Span,
}

/// How a binding may be used after creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingKind {
    /// `let`: immutable.
    Let,
    /// `var`: mutable with `:=`.
    Var,
    /// `const`: immutable.
    Const,
}

/// `let|var|const name [: T] = value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// `let`, `var` or `const`.
    pub kind: BindingKind,
    /// The bound name.
    pub name: Ident,
    /// Declared type, if any.
    pub ty: Option<TypeExpr>,
    /// The initial value.
    pub value: Expr,
    /// The whole statement.
    pub span: Span,
}

/// `name := value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assign {
    /// The `var` being assigned.
    pub target: Ident,
    /// The new value.
    pub value: Expr,
    /// The whole statement.
    pub span: Span,
}

/// A statement inside a block.
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    /// What kind of statement.
    pub kind: StmtKind,
    /// The whole statement.
    pub span: Span,
}

/// One `if`/`elif` arm.
#[derive(Debug, Clone, PartialEq)]
pub struct IfBranch {
    /// The condition.
    pub cond: Expr,
    /// The body run when it is `true`.
    pub body: Block,
    /// The whole arm.
    pub span: Span,
}

/// Statement kinds (§11).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StmtKind {
    /// `let`/`var`/`const`.
    Binding(Binding),
    /// `x := e`.
    Assign(Assign),
    /// `if c: … elif c: … else: …`; `branches` holds the `if` arm then every `elif` arm.
    If {
        /// `if` and `elif` arms in order.
        branches: Vec<IfBranch>,
        /// `else` block.
        else_body: Option<Block>,
    },
    /// `while c:`.
    While {
        /// Loop condition.
        cond: Expr,
        /// Body.
        body: Block,
    },
    /// `for x in e:`.
    For {
        /// Loop variable.
        var: Ident,
        /// Iterated value (range, array, map, int n).
        iter: Expr,
        /// Body.
        body: Block,
    },
    /// `break`.
    Break,
    /// `continue`.
    Continue,
    /// `return [e]`.
    Return(Option<Expr>),
    /// `emit T(f: e, …)`.
    Emit {
        /// Type of the created event.
        event_type: Ident,
        /// Fields (named arguments; a bare name `f` means `f: f`).
        args: Vec<Arg>,
    },
    /// An expression evaluated for its value.
    Expr(Expr),
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What kind of expression.
    pub kind: ExprKind,
    /// The whole expression.
    pub span: Span,
}

impl Expr {
    /// Builds an expression.
    pub fn new(kind: ExprKind, span: Span) -> Self {
        Expr { kind, span }
    }
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-e`.
    Neg,
    /// `~e` (bitwise not).
    BitNot,
    /// `not e`.
    Not,
}

/// Binary operators (§11.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Rem,
    /// `**`.
    Pow,
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `in`.
    In,
    /// `not in`.
    NotIn,
    /// `&`.
    BitAnd,
    /// `|`.
    BitOr,
    /// `^`.
    BitXor,
    /// `<<`.
    Shl,
    /// `>>`.
    Shr,
    /// `and` (short-circuit).
    And,
    /// `or` (short-circuit).
    Or,
    /// `??` (null coalescing, short-circuit).
    Coalesce,
}

impl BinaryOp {
    /// The operator as written in source.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
            BinaryOp::Pow => "**",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::In => "in",
            BinaryOp::NotIn => "not in",
            BinaryOp::BitAnd => "&",
            BinaryOp::BitOr => "|",
            BinaryOp::BitXor => "^",
            BinaryOp::Shl => "<<",
            BinaryOp::Shr => ">>",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Coalesce => "??",
        }
    }
}

/// A `key: value` entry of a map literal. A bare identifier key is the string of its name.
#[derive(Debug, Clone, PartialEq)]
pub struct MapEntry {
    /// The key expression.
    pub key: Expr,
    /// The value expression.
    pub value: Expr,
}

/// Expression kinds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ExprKind {
    /// Integer literal.
    Int(i64),
    /// Float literal.
    Float(f64),
    /// String literal (escapes decoded).
    Str(String),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// Duration literal, in nanoseconds.
    Duration(u64),
    /// Timestamp literal, in nanoseconds since the Unix epoch (UTC).
    Timestamp(i64),
    /// A name: local, top-level binding or event field (§11 lookup order).
    Name(Ident),
    /// `[a, b, …]`.
    Array(Vec<Expr>),
    /// `{k: v, …}`.
    Map(Vec<MapEntry>),
    /// Prefix operator.
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        operand: Box<Expr>,
    },
    /// Infix operator.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `a..b` or `a..=b`.
    Range {
        /// Start (inclusive).
        start: Box<Expr>,
        /// End.
        end: Box<Expr>,
        /// `..=`.
        inclusive: bool,
    },
    /// `f(a, …)`, also the desugaring of `e.f(a, …)` = `f(e, a, …)`.
    Call {
        /// Function name.
        callee: Ident,
        /// Arguments (for method syntax the receiver is first).
        args: Vec<Expr>,
        /// Written with method syntax.
        method: bool,
    },
    /// `e.name` (`optional`: `e?.name`).
    Field {
        /// The object.
        base: Box<Expr>,
        /// The field name.
        name: Ident,
        /// `?.`: `null` when `base` is `null`.
        optional: bool,
    },
    /// `e[i]`.
    Index {
        /// The indexed value.
        base: Box<Expr>,
        /// The index.
        index: Box<Expr>,
    },
    /// `e[a:b]` (either bound optional).
    Slice {
        /// The sliced value.
        base: Box<Expr>,
        /// Start bound.
        start: Option<Box<Expr>>,
        /// End bound.
        end: Option<Box<Expr>>,
    },
    /// `if c then a else b`.
    If {
        /// Condition.
        cond: Box<Expr>,
        /// Value when `true`.
        then: Box<Expr>,
        /// Value otherwise.
        else_: Box<Expr>,
    },
    /// `T where c` as an argument of `.not(…)`: events of type `T` passing `c` (Tier 2).
    EventFilter {
        /// Event type.
        event: Ident,
        /// The filter.
        filter: Box<Expr>,
    },
    /// `x => e` / `(a, b) => e` (Tier 3).
    Lambda {
        /// Parameter names.
        params: Vec<Ident>,
        /// Body.
        body: Box<Expr>,
    },
}
