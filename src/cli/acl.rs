//! `poseidon acl ...`: bootstrap the ACL, make, list and revoke tokens, and make join tokens.
//!
//! A token is printed alone on stdout (so `TOKEN=$(poseidon acl bootstrap)` works), with a note on
//! stderr that it is shown only once; `--json` prints the whole answer instead.

use argh::FromArgs;

use super::{manager_client, print_json, Failure};
use crate::util::rfc3339;
use crate::wire::IssuedToken;

/// Manage ACL tokens.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "acl")]
pub struct AclCmd {
    #[argh(subcommand)]
    /// what to do
    pub command: AclSub,
}

/// `acl` subcommands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum AclSub {
    /// Print the first management token (works once per cluster).
    Bootstrap(BootstrapCmd),
    /// Create, list or revoke tokens.
    Token(TokenCmd),
    /// Print a new token that workers join with.
    JoinToken(JoinTokenCmd),
}

/// Print the first management token; a second bootstrap is refused.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "bootstrap")]
pub struct BootstrapCmd {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// Print a new join token (needs a manage token).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "join-token")]
pub struct JoinTokenCmd {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// Create, list or revoke tokens (needs a manage token).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "token")]
pub struct TokenCmd {
    #[argh(subcommand)]
    /// what to do
    pub command: TokenSub,
}

/// `acl token` subcommands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum TokenSub {
    /// Create a token.
    Create(CreateCmd),
    /// List tokens (never their secrets).
    List(ListCmd),
    /// Revoke a token by its accessor.
    Revoke(RevokeCmd),
}

/// Create a token with a policy.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "create")]
pub struct CreateCmd {
    /// read, submit or manage
    #[argh(option)]
    pub policy: String,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// List tokens.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
pub struct ListCmd {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// Revoke a token.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "revoke")]
pub struct RevokeCmd {
    /// the token's accessor (the part before the dot)
    #[argh(positional)]
    pub accessor: String,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// Runs an `acl` command.
pub(super) async fn acl(c: AclCmd) -> Result<(), Failure> {
    match c.command {
        AclSub::Bootstrap(c) => {
            let t = manager_client(&c.manager).acl_bootstrap().await?;
            show(&t, c.json);
        }
        AclSub::JoinToken(c) => {
            let t = manager_client(&c.manager).acl_join_token().await?;
            show(&t, c.json);
        }
        AclSub::Token(TokenCmd {
            command: TokenSub::Create(c),
        }) => {
            let t = manager_client(&c.manager)
                .acl_create_token(&c.policy)
                .await?;
            show(&t, c.json);
        }
        AclSub::Token(TokenCmd {
            command: TokenSub::List(c),
        }) => {
            let tokens = manager_client(&c.manager).acl_tokens().await?;
            if c.json {
                print_json(&tokens);
                return Ok(());
            }
            println!(
                "{:<16}  {:<7}  {:<12}  CREATED",
                "ACCESSOR", "POLICY", "NODE"
            );
            for t in tokens {
                println!(
                    "{:<16}  {:<7}  {:<12}  {}",
                    t.accessor,
                    t.policy,
                    t.node.as_deref().unwrap_or("-"),
                    rfc3339(t.created_ms)
                );
            }
        }
        AclSub::Token(TokenCmd {
            command: TokenSub::Revoke(c),
        }) => {
            let t = manager_client(&c.manager).acl_revoke(&c.accessor).await?;
            println!("revoked {} ({})", t.accessor, t.policy);
        }
    }
    Ok(())
}

fn show(t: &IssuedToken, json: bool) {
    if json {
        print_json(t);
    } else {
        println!("{}", t.token);
        eprintln!(
            "accessor {}, policy {}: keep this token, it is not shown again",
            t.accessor, t.policy
        );
    }
}
