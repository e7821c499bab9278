//! The trainee stream: registered once, forgotten at most once. (Email uniqueness per tenant is
//! a cross-stream rule, enforced by the trainees projection's unique index, not here.)

use super::events::{Event, StreamType, TraineeForgotten, TraineeRegistered};
use super::values::{Email, PersonName};
use super::{Aggregate, DomainError};

#[derive(Debug, Clone, PartialEq)]
pub struct Trainee {
    pub email: Email,
    pub name: PersonName,
    /// Its personal data was erased: it reads as placeholders and takes no new submissions.
    pub forgotten: bool,
}

pub enum TraineeCommand {
    Register {
        email: Email,
        name: PersonName,
    },
    /// Erase the trainee's personal data. Forgetting a forgotten trainee records nothing more.
    Forget,
}

pub struct TraineeAggregate;

impl Aggregate for TraineeAggregate {
    type State = Option<Trainee>;
    type Command = TraineeCommand;
    const STREAM_TYPE: StreamType = StreamType::Trainee;

    fn evolve(state: Option<Trainee>, event: &Event) -> Option<Trainee> {
        match event {
            Event::TraineeRegistered(registered) => Some(Trainee {
                email: registered.email.clone(),
                name: registered.name.clone(),
                forgotten: false,
            }),
            Event::TraineeForgotten(_) => state.map(|trainee| Trainee {
                forgotten: true,
                ..trainee
            }),
            _ => state,
        }
    }

    fn decide(state: &Option<Trainee>, command: TraineeCommand) -> Result<Vec<Event>, DomainError> {
        match (state, command) {
            (None, TraineeCommand::Register { email, name }) => {
                Ok(vec![Event::TraineeRegistered(TraineeRegistered {
                    email,
                    name,
                })])
            }
            (Some(_), TraineeCommand::Register { .. }) => Err(DomainError::AlreadyExists(
                "a trainee with this id exists already".into(),
            )),
            (None, TraineeCommand::Forget) => Err(DomainError::NotFound("no such trainee".into())),
            (Some(trainee), TraineeCommand::Forget) if trainee.forgotten => Ok(Vec::new()),
            (Some(_), TraineeCommand::Forget) => {
                Ok(vec![Event::TraineeForgotten(TraineeForgotten {})])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::spec::given_when;

    fn register() -> TraineeCommand {
        TraineeCommand::Register {
            email: Email::parse("ada@example.com").unwrap(),
            name: PersonName::parse("Ada").unwrap(),
        }
    }

    #[test]
    fn a_new_trainee_is_registered() {
        let events = given_when::<TraineeAggregate>(&[], register()).unwrap();
        assert!(
            matches!(&events[..], [Event::TraineeRegistered(t)] if t.email.as_str() == "ada@example.com")
        );
    }

    #[test]
    fn registering_the_same_id_twice_is_refused() {
        let first = given_when::<TraineeAggregate>(&[], register()).unwrap();
        let result = given_when::<TraineeAggregate>(&first, register());
        assert!(matches!(result, Err(DomainError::AlreadyExists(_))));
    }

    #[test]
    fn a_trainee_is_forgotten_once() {
        let registered = given_when::<TraineeAggregate>(&[], register()).unwrap();
        let forgotten =
            given_when::<TraineeAggregate>(&registered, TraineeCommand::Forget).unwrap();
        assert!(matches!(&forgotten[..], [Event::TraineeForgotten(_)]));
        let history: Vec<Event> = registered.into_iter().chain(forgotten).collect();
        assert!(TraineeAggregate::fold(&history).unwrap().forgotten);
        let again = given_when::<TraineeAggregate>(&history, TraineeCommand::Forget).unwrap();
        assert!(again.is_empty());
        assert!(matches!(
            given_when::<TraineeAggregate>(&[], TraineeCommand::Forget),
            Err(DomainError::NotFound(_))
        ));
    }
}
