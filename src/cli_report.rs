//! Formatting reports for the command line: a readable table, or JSON.

use coursetrail::app::ReportOutput;
use coursetrail::reports::duration::{DurationRow, GroupKey};
use coursetrail::reports::funnel::FunnelRow;
use serde_json::json;
use std::fmt::Write;

fn group(key: &GroupKey) -> String {
    match key {
        GroupKey::Course(id) => id.to_string(),
        GroupKey::Month(year, month) => format!("{year:04}-{month:02}"),
        GroupKey::All => "all".into(),
    }
}

/// The JSON document of a report: what it describes, then its rows.
fn json_document<Row>(report: &ReportOutput<Row>, rows: Vec<serde_json::Value>) -> String {
    let body = json!({
        "asOf": report.as_of.to_rfc3339(),
        "position": report.position,
        "eventsReplayed": report.events_replayed,
        "rows": rows,
    });
    format!("{body:#}\n")
}

/// The first line of a table: what the report describes.
fn table_title<Row>(report: &ReportOutput<Row>, unit: &str) -> String {
    format!(
        "as of {} (position {}, {} events replayed){unit}\n",
        report.as_of.to_rfc3339(),
        report.position,
        report.events_replayed
    )
}

fn rate(value: Option<f64>) -> String {
    value.map_or("-".into(), |r| format!("{:.1}%", r * 100.0))
}

pub fn duration(report: &ReportOutput<DurationRow>, as_json: bool) -> String {
    if as_json {
        let rows: Vec<_> = report
            .rows
            .iter()
            .map(|row| {
                json!({
                    "group": group(&row.key),
                    "count": row.summary.as_ref().map_or(0, |s| s.count),
                    "meanSeconds": row.summary.as_ref().map(|s| s.mean),
                    "medianSeconds": row.summary.as_ref().map(|s| s.median),
                    "p75Seconds": row.summary.as_ref().map(|s| s.p75),
                    "p90Seconds": row.summary.as_ref().map(|s| s.p90),
                    "minSeconds": row.summary.as_ref().map(|s| s.min),
                    "maxSeconds": row.summary.as_ref().map(|s| s.max),
                    "stillOpen": row.still_open,
                    "endedEarly": row.ended_early,
                })
            })
            .collect();
        return json_document(report, rows);
    }
    let hours = |seconds: f64| format!("{:.2}", seconds / 3600.0);
    let mut out = table_title(report, "; durations in hours");
    let _ = writeln!(
        out,
        "{:<36} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "group", "count", "mean", "median", "p75", "p90", "min", "max", "open", "ended"
    );
    for row in &report.rows {
        let cells: Vec<String> = match &row.summary {
            Some(s) => [s.mean, s.median, s.p75, s.p90, s.min, s.max]
                .map(hours)
                .to_vec(),
            None => vec!["-".into(); 6],
        };
        let _ = writeln!(
            out,
            "{:<36} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
            group(&row.key),
            row.summary.as_ref().map_or(0, |s| s.count),
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            row.still_open,
            row.ended_early
        );
    }
    out
}

pub fn funnel(report: &ReportOutput<FunnelRow>, as_json: bool) -> String {
    if as_json {
        let rows: Vec<_> = report
            .rows
            .iter()
            .map(|row| {
                json!({
                    "courseId": row.course_id,
                    "registered": row.registered,
                    "started": row.started,
                    "submitted": row.submitted,
                    "passed": row.passed,
                    "completed": row.completed,
                    "withdrawn": row.withdrawn,
                    "overallRate": FunnelRow::rate(row.completed, row.registered),
                    "meanAttemptsToPass": row.attempts_to_pass.as_ref().map(|s| s.mean),
                    "medianAttemptsToPass": row.attempts_to_pass.as_ref().map(|s| s.median),
                    "firstAttemptPassRate": row.first_attempt_pass_rate,
                })
            })
            .collect();
        return json_document(report, rows);
    }
    let mut out = table_title(report, "");
    let _ = writeln!(
        out,
        "{:<36} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>10}",
        "course",
        "registered",
        "started",
        "submitted",
        "passed",
        "completed",
        "withdrawn",
        "overall",
        "attempts",
        "1st-pass"
    );
    for row in &report.rows {
        let _ = writeln!(
            out,
            "{:<36} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>10}",
            row.course_id,
            row.registered,
            row.started,
            row.submitted,
            row.passed,
            row.completed,
            row.withdrawn,
            rate(FunnelRow::rate(row.completed, row.registered)),
            row.attempts_to_pass
                .as_ref()
                .map_or("-".into(), |s| format!("{:.2}", s.mean)),
            rate(row.first_attempt_pass_rate),
        );
    }
    out
}
