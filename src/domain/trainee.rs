//! The trainee stream: registered once. (Email uniqueness per tenant is a cross-stream rule,
//! enforced by the trainees projection's unique index, not here.)

use super::events::{Event, StreamType, TraineeRegistered};
use super::values::{Email, PersonName};
use super::{Aggregate, DomainError};

#[derive(Debug, Clone, PartialEq)]
pub struct Trainee {
    pub email: Email,
    pub name: PersonName,
}

pub enum TraineeCommand {
    Register { email: Email, name: PersonName },
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
}
