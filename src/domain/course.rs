//! The course stream: created once, retired at most once.

use super::events::{CourseCreated, CourseRetired, Event, StreamType};
use super::values::{CourseCode, CourseTitle, Score};
use super::{Aggregate, DomainError};

/// What a course stream has established.
#[derive(Debug, Clone, PartialEq)]
pub struct Course {
    pub code: CourseCode,
    pub title: CourseTitle,
    pub passing_score: Score,
    pub retired: bool,
}

pub enum CourseCommand {
    Create {
        code: CourseCode,
        title: CourseTitle,
        passing_score: Score,
    },
    Retire,
}

pub struct CourseAggregate;

impl Aggregate for CourseAggregate {
    type State = Option<Course>;
    type Command = CourseCommand;
    const STREAM_TYPE: StreamType = StreamType::Course;

    fn evolve(state: Option<Course>, event: &Event) -> Option<Course> {
        match event {
            Event::CourseCreated(created) => Some(Course {
                code: created.code.clone(),
                title: created.title.clone(),
                passing_score: created.passing_score,
                retired: false,
            }),
            Event::CourseRetired(_) => state.map(|course| Course {
                retired: true,
                ..course
            }),
            _ => state,
        }
    }

    fn decide(state: &Option<Course>, command: CourseCommand) -> Result<Vec<Event>, DomainError> {
        match (state, command) {
            (
                None,
                CourseCommand::Create {
                    code,
                    title,
                    passing_score,
                },
            ) => Ok(vec![Event::CourseCreated(CourseCreated {
                code,
                title,
                passing_score,
            })]),
            (Some(_), CourseCommand::Create { .. }) => Err(DomainError::AlreadyExists(
                "the course exists already".into(),
            )),
            (None, CourseCommand::Retire) => Err(DomainError::NotFound("course not found".into())),
            (Some(course), CourseCommand::Retire) if course.retired => Err(
                DomainError::InvalidState("the course is retired already".into()),
            ),
            (Some(_), CourseCommand::Retire) => Ok(vec![Event::CourseRetired(CourseRetired {})]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::spec::given_when;

    fn create() -> CourseCommand {
        CourseCommand::Create {
            code: CourseCode::parse("SAFE-1").unwrap(),
            title: CourseTitle::parse("Safety basics").unwrap(),
            passing_score: Score::parse("passingScore", 70).unwrap(),
        }
    }

    fn created() -> Event {
        CourseAggregate::decide(&None, create()).unwrap().remove(0)
    }

    #[test]
    fn a_new_course_is_created() {
        let events = given_when::<CourseAggregate>(&[], create()).unwrap();
        assert!(matches!(&events[..], [Event::CourseCreated(c)] if c.passing_score.value() == 70));
    }

    #[test]
    fn creating_twice_is_refused() {
        let result = given_when::<CourseAggregate>(&[created()], create());
        assert!(matches!(result, Err(DomainError::AlreadyExists(_))));
    }

    #[test]
    fn an_active_course_is_retired_once() {
        let events = given_when::<CourseAggregate>(&[created()], CourseCommand::Retire).unwrap();
        assert_eq!(events, vec![Event::CourseRetired(CourseRetired {})]);
        let again = given_when::<CourseAggregate>(
            &[created(), Event::CourseRetired(CourseRetired {})],
            CourseCommand::Retire,
        );
        assert!(matches!(again, Err(DomainError::InvalidState(_))));
    }

    #[test]
    fn retiring_an_unknown_course_is_not_found() {
        let result = given_when::<CourseAggregate>(&[], CourseCommand::Retire);
        assert!(matches!(result, Err(DomainError::NotFound(_))));
    }
}
