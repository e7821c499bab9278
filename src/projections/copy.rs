//! Projection rows in PostgreSQL's `COPY … FROM STDIN` text format, for the rebuild's bulk load.
//!
//! Each table is a list of its columns, each name beside the value written for it, so the
//! statement's column list and a row's fields cannot drift apart. COPY is the cheapest way to
//! load rows on both engines: on Citus the coordinator routes a COPY's rows to the shard of
//! their `tenant_id` over the transaction's own connection (rule 16), where an
//! `INSERT … SELECT unnest(…)` would be pulled through the coordinator (rule 17).

use super::rows::{CourseRow, EnrollmentRow, SubmissionRow, TraineeRow};
use chrono::{DateTime, Utc};
use std::io::Write;
use uuid::Uuid;

/// One column: its name, and how a row writes its value.
type Column<R> = (&'static str, fn(&R, &mut Fields));

/// One table's columns after `tenant_id`.
pub(super) struct Table<R: 'static> {
    pub name: &'static str,
    pub columns: &'static [Column<R>],
}

impl<R> Table<R> {
    /// The statement that loads this table's rows of one tenant.
    pub fn statement(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        format!(
            "COPY {} (tenant_id, {}) FROM STDIN",
            self.name,
            names.join(", ")
        )
    }

    /// Appends `row` of tenant `tenant` as one line.
    pub fn write(&self, out: &mut Fields, tenant: Uuid, row: &R) {
        out.put(tenant);
        for (_, value) in self.columns {
            value(row, out);
        }
        out.end_row();
    }
}

pub(super) const COURSES: Table<CourseRow> = Table {
    name: "courses",
    columns: &[
        ("course_id", |r, out| out.put(r.course_id.as_uuid())),
        ("code", |r, out| out.put(r.code.as_str())),
        ("title", |r, out| out.put(r.title.as_str())),
        ("passing_score", |r, out| out.put(r.passing_score)),
        ("retired", |r, out| out.put(r.retired)),
        ("created_at", |r, out| out.put(r.created_at)),
        ("retired_at", |r, out| out.put(r.retired_at)),
        ("version", |r, out| out.put(r.version)),
    ],
};

pub(super) const TRAINEES: Table<TraineeRow> = Table {
    name: "trainees",
    columns: &[
        ("trainee_id", |r, out| out.put(r.trainee_id.as_uuid())),
        ("email", |r, out| out.put(r.email.as_str())),
        ("name", |r, out| out.put(r.name.as_str())),
        ("registered_at", |r, out| out.put(r.registered_at)),
        ("version", |r, out| out.put(r.version)),
    ],
};

pub(super) const ENROLLMENTS: Table<EnrollmentRow> = Table {
    name: "enrollments",
    columns: &[
        ("enrollment_id", |r, out| out.put(r.enrollment_id.as_uuid())),
        ("course_id", |r, out| out.put(r.course_id.as_uuid())),
        ("trainee_id", |r, out| out.put(r.trainee_id.as_uuid())),
        ("status", |r, out| out.put(r.status.as_str())),
        ("registered_at", |r, out| out.put(r.registered_at)),
        ("started_at", |r, out| out.put(r.started_at)),
        ("completed_at", |r, out| out.put(r.completed_at)),
        ("withdrawn_at", |r, out| out.put(r.withdrawn_at)),
        ("withdrawal_reason", |r, out| {
            out.put(r.withdrawal_reason.as_deref())
        }),
        ("submission_count", |r, out| out.put(r.submission_count)),
        ("best_score", |r, out| out.put(r.best_score)),
        ("passed_at", |r, out| out.put(r.passed_at)),
        ("version", |r, out| out.put(r.version)),
        ("updated_at", |r, out| out.put(r.updated_at)),
    ],
};

pub(super) const SUBMISSIONS: Table<SubmissionRow> = Table {
    name: "submissions",
    columns: &[
        ("submission_id", |r, out| out.put(r.submission_id.as_uuid())),
        ("enrollment_id", |r, out| out.put(r.enrollment_id.as_uuid())),
        ("submitted_at", |r, out| out.put(r.submitted_at)),
        ("score", |r, out| out.put(r.score)),
        ("passed", |r, out| out.put(r.passed)),
        ("graded_at", |r, out| out.put(r.graded_at)),
    ],
};

/// Lines of COPY text being written: tab-separated fields, `\N` for NULL.
pub(super) struct Fields {
    bytes: Vec<u8>,
    /// Whether the next field starts a line (no tab before it).
    line_start: bool,
}

impl Fields {
    pub fn new() -> Self {
        Self {
            bytes: Vec::new(),
            line_start: true,
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The lines written so far, leaving this empty.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }

    fn put(&mut self, value: impl CopyValue) {
        if !self.line_start {
            self.bytes.push(b'\t');
        }
        self.line_start = false;
        value.write_to(&mut self.bytes);
    }

    fn end_row(&mut self) {
        self.bytes.push(b'\n');
        self.line_start = true;
    }
}

/// A value as one field of COPY text.
trait CopyValue {
    fn write_to(&self, out: &mut Vec<u8>);
}

impl CopyValue for Uuid {
    fn write_to(&self, out: &mut Vec<u8>) {
        let mut buffer = Uuid::encode_buffer();
        out.extend_from_slice(self.hyphenated().encode_lower(&mut buffer).as_bytes());
    }
}

impl CopyValue for &str {
    /// Backslash, newline, carriage return and tab are the characters COPY text reads
    /// specially inside a field.
    fn write_to(&self, out: &mut Vec<u8>) {
        for byte in self.bytes() {
            match byte {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => out.push(byte),
            }
        }
    }
}

impl CopyValue for i16 {
    fn write_to(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "{self}");
    }
}

impl CopyValue for i32 {
    fn write_to(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "{self}");
    }
}

impl CopyValue for bool {
    fn write_to(&self, out: &mut Vec<u8>) {
        out.push(if *self { b't' } else { b'f' });
    }
}

impl CopyValue for DateTime<Utc> {
    /// ISO 8601 in UTC with every fractional digit: PostgreSQL reads it back to the microsecond
    /// the live path stored.
    fn write_to(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "{}+00", self.naive_utc());
    }
}

impl<T: CopyValue> CopyValue for Option<T> {
    fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Some(value) => value.write_to(out),
            None => out.extend_from_slice(b"\\N"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_tab_separated_escaped_and_null_as_backslash_n() {
        let mut fields = Fields::new();
        fields.put("a\tb\\c\nd\re");
        fields.put(None::<i32>);
        fields.put(Some(7_i16));
        fields.put(true);
        fields.end_row();
        fields.put(Uuid::nil());
        fields.end_row();
        assert_eq!(
            String::from_utf8(fields.take()).unwrap(),
            "a\\tb\\\\c\\nd\\re\t\\N\t7\tt\n00000000-0000-0000-0000-000000000000\n"
        );
    }

    #[test]
    fn times_keep_their_microseconds_in_utc() {
        let at = DateTime::parse_from_rfc3339("2026-12-04T21:05:06.000120+02:00")
            .unwrap()
            .with_timezone(&Utc);
        let mut out = Vec::new();
        at.write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-12-04 19:05:06.000120+00"
        );
    }

    #[test]
    fn a_statement_names_every_column_after_the_tenant() {
        assert_eq!(
            SUBMISSIONS.statement(),
            "COPY submissions (tenant_id, submission_id, enrollment_id, submitted_at, score, \
             passed, graded_at) FROM STDIN"
        );
    }
}
