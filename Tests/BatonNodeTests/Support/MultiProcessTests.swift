import Testing

/// Suites that start several real `baton` processes (and PostgreSQL servers) take turns: run
/// side by side on a 2-core machine they starve each other's heartbeats and turn timing
/// bounds into noise. In-process tests still run in parallel with them.
@Suite(.serialized) enum MultiProcessTests {}
