//! The commands a session answers at once, without any replica: PING,
//! ECHO, QUIT, CONSISTENCY, INFO, COMMAND, AUTH, HELLO, CLIENT, DBSIZE.

use enigma_cluster::ConsistencyLevel;
use tracing::debug;

use super::{ok, Session};
use crate::command::{ClientQuery, Command, CommandQuery, COMMAND_TABLE};
use crate::resp::{Protocol, Reply};

impl Session {
    pub(super) fn answer_now(&mut self, command: Command) -> Reply {
        match command {
            Command::Ping(None) => Reply::Simple("PONG".into()),
            Command::Ping(Some(message)) | Command::Echo(message) => Reply::Bulk(message),
            Command::Quit => {
                self.quit = true;
                ok()
            }
            Command::Consistency(None) => Reply::Simple(self.level.name().into()),
            Command::Consistency(Some(level)) => match self.check_level(level) {
                Ok(_) => {
                    self.level = level;
                    ok()
                }
                Err(reply) => reply,
            },
            Command::Info(section) => {
                Reply::Bulk(crate::info::info(&self.shared, section.as_deref()).into_bytes())
            }
            Command::Command(query) => command_reply(&query),
            Command::Auth { username, password } => self.auth(username.as_deref(), &password),
            Command::Hello {
                protocol,
                auth,
                name,
            } => self.hello(protocol, auth, name),
            Command::Client(query) => self.client(query),
            Command::DbSize => {
                Reply::Integer(self.shared.snapshot().keys_estimate.unwrap_or(0) as i64)
            }
            Command::At { .. }
            | Command::Get(_)
            | Command::Set { .. }
            | Command::Del(_)
            | Command::Exists(_)
            | Command::MGet(_)
            | Command::MSet(_)
            | Command::Conditional(_)
            | Command::Repair => unreachable!("key commands and REPAIR are started, not answered"),
        }
    }

    fn auth(&mut self, username: Option<&[u8]>, password: &[u8]) -> Reply {
        let Some(required) = &self.shared.config.requirepass else {
            return Reply::error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            );
        };
        let user_ok = username.is_none_or(|u| u == b"default");
        if user_ok && constant_time_eq(required.expose().as_bytes(), password) {
            self.authenticated = true;
            ok()
        } else {
            Reply::error("WRONGPASS invalid username-password pair or user is disabled.")
        }
    }

    fn hello(
        &mut self,
        protocol: Option<u8>,
        auth: Option<(Vec<u8>, Vec<u8>)>,
        name: Option<Vec<u8>>,
    ) -> Reply {
        let protocol = match protocol {
            None => self.protocol,
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return Reply::error("NOPROTO unsupported protocol version"),
        };
        if let Some((user, password)) = auth {
            let reply = self.auth(Some(&user), &password);
            if matches!(reply, Reply::Error(_)) {
                return reply;
            }
        }
        if !self.authenticated {
            return Reply::error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
            );
        }
        self.protocol = protocol;
        if name.is_some() {
            self.name = name;
        }
        let text = |s: &str| Reply::Bulk(s.as_bytes().to_vec());
        Reply::Map(vec![
            (text("server"), text("enigma")),
            (text("version"), text(env!("CARGO_PKG_VERSION"))),
            (
                text("proto"),
                Reply::Integer(if protocol == Protocol::Resp3 { 3 } else { 2 }),
            ),
            (text("id"), Reply::Integer(self.conn as i64)),
            (text("mode"), text("standalone")),
            (text("role"), text("master")),
            (text("modules"), Reply::Array(Vec::new())),
        ])
    }

    fn client(&mut self, query: ClientQuery) -> Reply {
        match query {
            ClientQuery::SetName(name) => {
                if name.iter().any(|b| b.is_ascii_whitespace()) {
                    return Reply::error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                }
                self.name = (!name.is_empty()).then_some(name);
                ok()
            }
            ClientQuery::GetName => self.name.clone().map_or(Reply::Null, Reply::Bulk),
            ClientQuery::Id => Reply::Integer(self.conn as i64),
            ClientQuery::SetInfo { attribute, value } => {
                debug!(conn = self.conn, %attribute, value = %String::from_utf8_lossy(&value), "client library");
                ok()
            }
        }
    }

    /// Replicas the level needs at this replication factor, or the error.
    pub(super) fn check_level(&self, level: ConsistencyLevel) -> Result<usize, Reply> {
        let rf = self.shared.ring.replication_factor();
        level.replicas_required(rf).ok_or_else(|| {
            Reply::error(format!(
                "ERR consistency level {level} needs more replicas than the replication factor of {rf}"
            ))
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn command_entry(entry: &(&str, i64, bool, i64, i64, i64)) -> Reply {
    let (name, arity, write, first, last, step) = *entry;
    let flag = if write { "write" } else { "readonly" };
    Reply::Array(vec![
        Reply::Bulk(name.as_bytes().to_vec()),
        Reply::Integer(arity),
        Reply::Array(vec![Reply::Simple(flag.into())]),
        Reply::Integer(first),
        Reply::Integer(last),
        Reply::Integer(step),
    ])
}

fn command_reply(query: &CommandQuery) -> Reply {
    let find = |name: &str| COMMAND_TABLE.iter().find(|c| c.0 == name);
    match query {
        CommandQuery::All => Reply::Array(COMMAND_TABLE.iter().map(command_entry).collect()),
        CommandQuery::Count => Reply::Integer(COMMAND_TABLE.len() as i64),
        CommandQuery::Info(names) if names.is_empty() => {
            Reply::Array(COMMAND_TABLE.iter().map(command_entry).collect())
        }
        CommandQuery::Info(names) => Reply::Array(
            names
                .iter()
                .map(|n| find(n).map_or(Reply::Null, command_entry))
                .collect(),
        ),
        CommandQuery::Docs(names) => {
            let entries: Vec<&(&str, i64, bool, i64, i64, i64)> = if names.is_empty() {
                COMMAND_TABLE.iter().collect()
            } else {
                names.iter().filter_map(|n| find(n)).collect()
            };
            Reply::Map(
                entries
                    .into_iter()
                    .map(|entry| {
                        let text = |s: &str| Reply::Bulk(s.as_bytes().to_vec());
                        (
                            text(entry.0),
                            Reply::Map(vec![
                                (text("summary"), text(command_summary(entry.0))),
                                (text("group"), text("enigma")),
                            ]),
                        )
                    })
                    .collect(),
            )
        }
    }
}

fn command_summary(name: &str) -> &'static str {
    match name {
        "ping" => "Answers PONG, or echoes its argument.",
        "echo" => "Returns its argument.",
        "get" => "Reads a key at the connection's consistency level.",
        "set" => "Writes a key; options NX, XX, GET and expiry are not supported.",
        "del" => "Deletes keys; returns how many existed.",
        "exists" => "Counts the given keys that exist.",
        "mget" => "Reads several keys.",
        "mset" => "Writes several keys (each key is atomic, the set is not).",
        "info" => "Server, membership, storage and statistics sections.",
        "command" => "Describes the commands EnigmaDB serves.",
        "quit" => "Closes the connection.",
        "consistency" => {
            "Shows or sets the connection's consistency level: ONE, TWO, QUORUM, ALL or SERIAL."
        }
        "at" => "AT <level> <command ...>: runs one key command at a level.",
        "auth" => "Authenticates with the server's requirepass.",
        "hello" => "Selects RESP2 or RESP3 and optionally authenticates.",
        "client" => "CLIENT SETNAME, GETNAME, ID and SETINFO.",
        "dbsize" => "An estimate of the live keys this node stores (a paced count, seconds old).",
        "repair" => "Runs a full anti-entropy pass over this node's ranges; answers when done.",
        _ => "",
    }
}
