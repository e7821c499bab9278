//! The admin console in a real browser: headless Chromium against a real server and real
//! PostgreSQL. Sign in, filter the audit trail, see a new event appear live, read a duration
//! chart's numbers off the page, and a trainee kept to its own data.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod driver;

use driver::Browser;
use helpers::{TestApp, uuid};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// The console's address, signed in with `token` and opened at `route`.
fn console_url(app: &TestApp, token: &str, route: &str) -> String {
    format!("http://{}/console/#token={token}&next={route}", app.address)
}

/// One course and its enrollments: `completed` trainees all the way through, `open` ones
/// registered only. Returns the course and the trainees in order.
async fn course_with_trainees(
    app: &TestApp,
    code: &str,
    completed: usize,
    open: usize,
) -> (Uuid, Vec<Uuid>) {
    let admin = app.admin();
    let course = app.create_course(&admin, code, 50).await;
    let mut trainees = Vec::new();
    for i in 0..completed + open {
        let trainee = app
            .register_trainee(&admin, &format!("{code}-{i}@example.com").to_lowercase())
            .await;
        let enrollment = app.register_for_course(&admin, course, Some(trainee)).await;
        if i < completed {
            app.enrollment_step(&admin, "startCourse", enrollment).await;
            let submission = app.submit(&admin, enrollment).await;
            app.grade(&admin, enrollment, submission, 80).await;
            app.enrollment_step(&admin, "completeCourse", enrollment)
                .await;
        }
        trainees.push(trainee);
    }
    (course, trainees)
}

/// The audit rows on the page: position, type and stream of each.
async fn audit_rows(browser: &Browser) -> Vec<Value> {
    let rows = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=audit-row]')].map(r => ({ \
             position: r.dataset.position, type: r.dataset.type, stream: r.dataset.streamId }))",
            vec![],
        )
        .await;
    rows.as_array().cloned().unwrap_or_default()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_filters_the_trail_and_sees_new_events_live() {
    let app = TestApp::spawn().await;
    let (_, trainees) = course_with_trainees(&app, "LIVE-1", 1, 2).await;
    let browser = Browser::start().await;
    browser
        .goto(&console_url(&app, &app.admin(), "/audit"))
        .await;
    let role = browser
        .until(
            "the signed-in role",
            "return document.querySelector('[data-testid=whoami]')?.dataset.role",
            vec![],
        )
        .await;
    assert_eq!(role, "ADMIN");
    // The token left the address bar for the tab's session storage, and nowhere else.
    let kept = browser
        .eval(
            "return { hash: location.hash, session: sessionStorage.length, local: localStorage.length }",
            vec![],
        )
        .await;
    assert_eq!(kept, json!({ "hash": "#/audit", "session": 1, "local": 0 }));
    let total = app.head(app.tenant).await;
    browser
        .until(
            "the whole trail",
            "return document.querySelectorAll('[data-testid=audit-row]').length === arguments[0]",
            vec![json!(total)],
        )
        .await;
    let positions: Vec<String> = audit_rows(&browser)
        .await
        .iter()
        .map(|row| row["position"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (1..=total).map(|p| p.to_string()).collect();
    assert_eq!(positions, expected, "every event, in position order");

    // Filter by the first trainee: its registration and its enrollment's five events.
    browser
        .type_into("filter-trainee", &trainees[0].to_string())
        .await;
    browser.click("filter-apply").await;
    let filtered = browser
        .until(
            "the filtered trail",
            "const rows = document.querySelectorAll('[data-testid=audit-row]'); \
             return rows.length === 6 ? rows.length : null",
            vec![],
        )
        .await;
    assert_eq!(filtered, 6);

    browser.type_into("filter-trainee", "").await;
    browser.click("filter-apply").await;
    browser.click("live-toggle").await;
    browser
        .until(
            "the live state",
            "return document.querySelector('[data-testid=live-state]').textContent === 'live'",
            vec![],
        )
        .await;
    let latencies = commit_and_watch(&app, &browser, 100).await;
    print_latencies(&latencies);
    assert_eq!(latencies.len(), 100, "every committed event appeared live");

    // A trainee forgotten while the trail is live leaves the filter's suggestions at once.
    let suggested = "return [...document.querySelectorAll('datalist option')]\
                     .some((option) => option.value === arguments[0])";
    let gone = "return ![...document.querySelectorAll('datalist option')]\
                .some((option) => option.value === arguments[0])";
    let forgotten = json!(trainees[1]);
    browser
        .until("the trainee suggested", suggested, vec![forgotten.clone()])
        .await;
    app.ok(
        &app.admin(),
        "mutation($t: UUID!) { forgetTrainee(input: {traineeId: $t}) { position } }",
        json!({ "t": forgotten }),
    )
    .await;
    browser
        .until(
            "the forgotten trainee's suggestion gone",
            gone,
            vec![forgotten],
        )
        .await;
    browser.close().await;
}

/// Commits `count` events one after another and, for each, how long after the mutation was
/// acknowledged (committed) its row was painted, in milliseconds.
async fn commit_and_watch(app: &TestApp, browser: &Browser, count: usize) -> Vec<i64> {
    let admin = app.admin();
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let data = app
            .ok(
                &admin,
                "mutation($i: CreateCourseInput!) { createCourse(input: $i) { position } }",
                json!({ "i": { "code": format!("L-{i}"), "title": "Live", "passingScore": 50 } }),
            )
            .await;
        let acknowledged = now_ms();
        let position = data["createCourse"]["position"]
            .as_str()
            .unwrap()
            .to_owned();
        let painted = browser
            .until(
                "the live row",
                "const row = document.querySelector(`[data-testid=audit-row][data-position=\"${arguments[0]}\"]`); \
                 return row && row.dataset.live === 'true' && row.dataset.paintedAt ? Number(row.dataset.paintedAt) : null",
                vec![json!(position)],
            )
            .await;
        latencies.push((painted.as_i64().unwrap() - acknowledged).max(0));
    }
    latencies
}

fn print_latencies(latencies: &[i64]) {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let at =
        |q: f64| sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1];
    println!(
        "live view, commit acknowledged → row painted, {} events: p50 {} ms, p99 {} ms, max {} ms",
        sorted.len(),
        at(0.50),
        at(0.99),
        sorted[sorted.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_duration_chart_shows_the_numbers_of_the_report() {
    let app = TestApp::spawn().await;
    let (course, _) = course_with_trainees(&app, "CHART-1", 3, 1).await;
    let browser = Browser::start().await;
    let route = "/reports/duration?from=REGISTERED&to=COMPLETED&groupBy=COURSE";
    browser.goto(&console_url(&app, &app.admin(), route)).await;
    let shown = browser
        .until(
            "the duration chart",
            "const group = document.querySelector('[data-testid=duration-group]'); \
             if (!group || !group.querySelector('svg')) return null; \
             const stats = {}; \
             group.querySelectorAll('[data-stat]').forEach(s => stats[s.dataset.stat] = Number(s.dataset.value)); \
             return { group: group.dataset.group, stats }",
            vec![],
        )
        .await;
    let report = app
        .ok(
            &app.admin(),
            "query { durationReport(input: {from: REGISTERED, to: COMPLETED}) { rows { group count stillOpen endedEarly durations { minSeconds medianSeconds maxSeconds } } } }",
            json!({}),
        )
        .await;
    let row = &report["durationReport"]["rows"][0];
    assert_eq!(shown["group"], course.to_string());
    assert_eq!(shown["stats"]["count"], 3);
    assert_eq!(shown["stats"]["count"], row["count"]);
    assert_eq!(shown["stats"]["stillOpen"], row["stillOpen"]);
    assert_eq!(shown["stats"]["endedEarly"], row["endedEarly"]);
    for (stat, field) in [
        ("min", "minSeconds"),
        ("median", "medianSeconds"),
        ("max", "maxSeconds"),
    ] {
        let on_page = shown["stats"][stat].as_f64().unwrap();
        let from_api = row["durations"][field].as_f64().unwrap();
        assert!(
            (on_page - from_api).abs() < 1e-6,
            "{stat}: {on_page} vs {from_api}"
        );
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trainee_sees_only_its_own_enrollments_and_history() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let (course, trainees) = course_with_trainees(&app, "MINE-1", 0, 2).await;
    let (me, other) = (trainees[0], trainees[1]);
    let mine = enrollment_of(&app, me).await;
    let theirs = enrollment_of(&app, other).await;
    let _ = (course, &admin);

    let browser = Browser::start().await;
    browser
        .goto(&console_url(&app, &app.trainee(me), "/enrollments"))
        .await;
    let listed = browser
        .until(
            "the trainee's enrollments",
            "const rows = [...document.querySelectorAll('[data-testid=enrollment-row]')]; \
             return rows.length ? rows.map(r => r.dataset.enrollmentId) : null",
            vec![],
        )
        .await;
    assert_eq!(listed, json!([mine.to_string()]));
    let nav = browser
        .eval("return [...document.querySelectorAll('nav [data-testid^=nav-]')].map(n => n.dataset.testid)", vec![])
        .await;
    assert!(
        !nav.as_array().unwrap().contains(&json!("nav-reports")),
        "{nav}"
    );

    // Another trainee's enrollment, asked for by id: an error with its code, not a blank page.
    browser
        .goto(&console_url(
            &app,
            &app.trainee(me),
            &format!("/enrollment/{theirs}"),
        ))
        .await;
    let shown = browser
        .until(
            "a refusal",
            "const error = document.querySelector('[data-testid=error]'); \
             const missing = document.querySelector('[data-testid=enrollment-missing]'); \
             return error ? 'error:' + error.dataset.code : (missing ? 'missing' : null)",
            vec![],
        )
        .await;
    assert!(
        shown == "error:FORBIDDEN" || shown == "missing" || shown == "error:NOT_FOUND",
        "{shown}"
    );
    let page = browser
        .eval("return document.documentElement.outerHTML", vec![])
        .await;
    let page = page.as_str().unwrap();
    assert!(
        !page.contains(&other.to_string()) && !page.contains("mine-1-1@example.com"),
        "no trace of the other trainee"
    );

    // Its own enrollment's history shows only its own stream.
    browser
        .goto(&console_url(
            &app,
            &app.trainee(me),
            &format!("/enrollment/{mine}"),
        ))
        .await;
    browser.by_test_id("enrollment-history").await;
    let streams = browser
        .until(
            "the history",
            "const rows = [...document.querySelectorAll('[data-testid=enrollment-history] [data-testid=audit-row]')]; \
             return rows.length ? rows.map(r => r.dataset.streamId) : null",
            vec![],
        )
        .await;
    assert!(
        streams
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s == &json!(mine.to_string())),
        "{streams}"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_shown_with_its_code() {
    let app = TestApp::spawn().await;
    let browser = Browser::start().await;
    browser
        .goto(&console_url(&app, "not-a-token", "/audit"))
        .await;
    let code = browser
        .until(
            "the error banner",
            "const e = document.querySelector('[data-testid=error]'); return e && e.dataset.code",
            vec![],
        )
        .await;
    assert_eq!(code, "UNAUTHENTICATED");
    browser.close().await;
}

/// The one enrollment of `trainee`.
async fn enrollment_of(app: &TestApp, trainee: Uuid) -> Uuid {
    let data = app
        .ok(
            &app.admin(),
            "query($t: UUID!) { enrollments(traineeId: $t) { edges { node { id } } } }",
            json!({ "t": trainee }),
        )
        .await;
    uuid(&data["enrollments"]["edges"][0]["node"]["id"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_is_labelled_and_an_event_opens_from_the_keyboard() {
    let app = TestApp::spawn().await;
    course_with_trainees(&app, "KEYS-1", 1, 0).await;
    let browser = Browser::start().await;
    // Each view's own control, waited for so the check reads the new view, not the last one.
    for (route, control) in [
        ("/audit", "filter-apply"),
        ("/reports/duration", "report-submit"),
        ("/enrollments", "enrollment-apply"),
    ] {
        browser.goto(&console_url(&app, &app.admin(), route)).await;
        browser.by_test_id(control).await;
        let unlabelled = browser
            .eval(
                "return [...document.querySelectorAll('input, select, textarea')] \
                 .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) \
                 && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby')) \
                 .map(e => e.outerHTML.slice(0, 100))",
                vec![],
            )
            .await;
        assert_eq!(unlabelled, json!([]), "{route}: every field has a label");
    }

    browser
        .goto(&console_url(&app, &app.admin(), "/audit"))
        .await;
    browser.by_test_id("audit-row").await;
    browser
        .eval(
            "document.querySelector('[data-testid=audit-row]').focus()",
            vec![],
        )
        .await;
    let focused = browser.client.active_element().await.expect("focus");
    focused.send_keys("\u{E007}").await.expect("Enter");
    let opened = browser
        .until(
            "the event's details",
            "const d = document.querySelector('[data-testid=event-details]'); \
             return d && d.dataset.position",
            vec![],
        )
        .await;
    assert_eq!(opened, "1", "Enter on the first row opens event 1");
    browser.close().await;
}
