//! What the server's `/metrics` said after a run: every family, with its total (a counter's or
//! gauge's sum over its series, a histogram's count of observations).

use prometheus_parse::{Scrape, Value};
use std::collections::BTreeMap;

/// Fetches `/metrics` beside `graphql_url` and prints one line per family.
pub async fn print_metrics(graphql_url: &str) -> anyhow::Result<()> {
    let url = graphql_url.replace("/graphql", "/metrics");
    let text = reqwest::get(&url).await?.error_for_status()?.text().await?;
    let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))?;
    let mut totals: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for sample in &scrape.samples {
        let value = match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |bucket| bucket.count),
            Value::Summary(_) => continue,
        };
        let entry = totals.entry(sample.metric.as_str()).or_default();
        entry.0 += value;
        entry.1 += 1;
    }
    println!(
        "server /metrics after the run: {} families, parsed as Prometheus text",
        scrape.docs.len()
    );
    for family in scrape.docs.keys() {
        let (total, series) = totals.get(family.as_str()).copied().unwrap_or_default();
        println!("  {family}: {total:.0} over {series} series");
    }
    Ok(())
}
