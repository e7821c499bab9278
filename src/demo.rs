//! A sample history for the development server's new `Demo` tenant: courses and trainees walked
//! through every lifecycle state by the application's own commands, a step every few hundred
//! milliseconds, so that a first look at the console finds a live trail and reports with
//! something in them. Never run against a configured database.

use crate::app::{App, AppError, Caller, CommandOptions};
use crate::domain::values::{Answers, CourseCode, CourseTitle, Email, PersonName, Score};
use crate::domain::{CourseId, EnrollmentId, SubmissionId, TenantId, TraineeId};
use std::time::Duration;

const COURSES: [(&str, &str, i64); 3] = [
    ("SAFETY-101", "Workplace safety basics", 70),
    ("FIRSTAID-120", "First aid at work", 60),
    ("GDPR-110", "Data protection essentials", 80),
];

const TRAINEES: [&str; 10] = [
    "Ada Lovelace",
    "Alan Turing",
    "Grace Hopper",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Frances Allen",
    "Ken Thompson",
    "Radia Perlman",
    "Tony Hoare",
];

/// The pause between two steps: long enough for durations to differ, short enough for the
/// whole history to be written within half a minute.
const STEP: Duration = Duration::from_millis(120);

/// How far one enrollment goes: registered (0) up to completed (5), or withdrawn (6).
fn stage(trainee: usize, course: usize) -> usize {
    (trainee * 5 + course * 3) % 7
}

/// Writes the sample history; returns after the last step.
pub async fn seed(app: &App, tenant: TenantId) -> Result<(), AppError> {
    let admin = Caller::operator(tenant);
    let mut courses = Vec::new();
    for (code, title, passing) in COURSES {
        let outcome = app
            .commands()
            .create_course(
                &admin,
                &CommandOptions::default(),
                CourseCode::parse(code)?,
                CourseTitle::parse(title)?,
                Score::parse("passingScore", passing)?,
            )
            .await?;
        courses.push(CourseId::from_uuid(outcome.stream_id));
    }
    let mut enrollments = Vec::new();
    for (i, name) in TRAINEES.iter().enumerate() {
        let trainee = register(app, &admin, name).await?;
        for (c, course) in courses.iter().enumerate().filter(|(c, _)| (i + c) % 3 != 2) {
            let outcome = app
                .commands()
                .register_for_course(&admin, &CommandOptions::default(), *course, Some(trainee))
                .await?;
            enrollments.push((
                EnrollmentId::from_uuid(outcome.stream_id),
                stage(i, c),
                None,
            ));
            tokio::time::sleep(STEP).await;
        }
    }
    for step in 1..=6 {
        for (enrollment, stage, pending) in &mut enrollments {
            let acts = if *stage == 6 {
                step == 6
            } else {
                *stage >= step
            };
            if acts {
                advance(app, &admin, *enrollment, (step, *stage), pending).await?;
                tokio::time::sleep(STEP).await;
            }
        }
    }
    Ok(())
}

async fn register(app: &App, admin: &Caller, name: &str) -> Result<TraineeId, AppError> {
    let first = name.split(' ').next().unwrap_or(name).to_lowercase();
    let outcome = app
        .commands()
        .register_trainee(
            admin,
            &CommandOptions::default(),
            Email::parse(&format!("{first}@example.com"))?,
            PersonName::parse(name)?,
            None,
        )
        .await?;
    Ok(TraineeId::from_uuid(outcome.stream_id))
}

/// Takes `enrollment` one step further towards its `stage`; `pending` is its submission
/// waiting for a grade.
async fn advance(
    app: &App,
    admin: &Caller,
    enrollment: EnrollmentId,
    (step, stage): (usize, usize),
    pending: &mut Option<SubmissionId>,
) -> Result<(), AppError> {
    let options = CommandOptions::default();
    match step {
        _ if stage == 6 => {
            app.commands()
                .withdraw_registration(admin, &options, enrollment, None)
                .await?;
        }
        1 => {
            app.commands()
                .start_course(admin, &options, enrollment)
                .await?;
        }
        2 => *pending = Some(submit(app, admin, enrollment, "b").await?),
        // A first attempt that fails; from stage 4 on, a second one that passes.
        3 | 4 => {
            if let Some(submission) = pending.take() {
                let score = Score::parse("score", if step == 4 { 90 } else { 40 })?;
                app.commands()
                    .grade_submission(admin, &options, enrollment, submission, score)
                    .await?;
            }
            if step == 3 && stage >= 4 {
                *pending = Some(submit(app, admin, enrollment, "a").await?);
            }
        }
        5 => {
            app.commands()
                .complete_course(admin, &options, enrollment)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

async fn submit(
    app: &App,
    admin: &Caller,
    enrollment: EnrollmentId,
    answer: &str,
) -> Result<SubmissionId, AppError> {
    let answers = Answers::parse(serde_json::json!({ "q1": answer, "q2": "d" }))?;
    let submitted = app
        .commands()
        .submit_test(admin, &CommandOptions::default(), enrollment, answers)
        .await?;
    Ok(submitted.submission_id)
}
