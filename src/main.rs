//! The `coursetrail` binary: the server (default) and the operator's commands.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use coursetrail::app::{App, AppSettings, Caller};
use coursetrail::auth::{Role, TokenIssuer};
use coursetrail::config::{Config, JwtKeys};
use coursetrail::db::{self, Database};
use coursetrail::domain::TenantId;
use coursetrail::reports::LifecyclePoint;
use coursetrail::reports::duration::{DurationSpec, GroupBy};
use coursetrail::telemetry::Telemetry;
use coursetrail::{graphql, server, store};
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

mod cli_report;

#[derive(Parser)]
#[command(
    name = "coursetrail",
    version,
    about = "Multi-tenant, event-sourced training platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve GraphQL (the default). Without DATABASE_URL, runs a private PostgreSQL cluster.
    Serve,
    /// Apply the pending database migrations and exit.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Mint a token with the configured HS256 secret (development and scripts).
    Token {
        #[arg(long)]
        tenant: Uuid,
        #[arg(long)]
        role: Role,
        #[arg(long)]
        sub: Uuid,
        /// Lifetime, e.g. 15m, 12h, 7d.
        #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Print the GraphQL schema (SDL); `schema.graphql` must equal it.
    Schema,
    /// Rebuild projections from the event log.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Reports replayed from the event log.
    #[command(subcommand)]
    Report(ReportCommand),
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Replay the log into fresh projection tables and swap them in, per tenant.
    Rebuild {
        /// Only this tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<Uuid>,
    },
}

/// What every report is computed over.
#[derive(Args)]
struct ReportScope {
    #[arg(long)]
    tenant: Uuid,
    /// Only this course (repeatable; default: every course).
    #[arg(long = "course")]
    courses: Vec<Uuid>,
    /// Describe the past: only events recorded by then (RFC 3339).
    #[arg(long)]
    as_of: Option<DateTime<Utc>>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl ReportScope {
    fn caller(&self) -> Caller {
        Caller::operator(TenantId::from_uuid(self.tenant))
    }

    fn course_ids(&self) -> Option<Vec<Uuid>> {
        (!self.courses.is_empty()).then(|| self.courses.clone())
    }
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Time between two lifecycle points per enrollment.
    Duration {
        /// REGISTERED, STARTED, FIRST_SUBMISSION, PASSED, COMPLETED or WITHDRAWN.
        #[arg(long, value_parser = parse_point)]
        from: LifecyclePoint,
        #[arg(long, value_parser = parse_point)]
        to: LifecyclePoint,
        /// course, cohort-month or none.
        #[arg(long, default_value = "course", value_parser = parse_group_by)]
        group_by: GroupBy,
        #[command(flatten)]
        scope: ReportScope,
    },
    /// Per course, how many enrollments reached each lifecycle point.
    Funnel {
        #[command(flatten)]
        scope: ReportScope,
    },
}

fn parse_point(raw: &str) -> Result<LifecyclePoint, String> {
    LifecyclePoint::parse(raw).ok_or_else(|| {
        let names: Vec<&str> = LifecyclePoint::ALL.iter().map(|p| p.as_str()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

fn parse_group_by(raw: &str) -> Result<GroupBy, String> {
    match raw.to_ascii_lowercase().replace('_', "-").as_str() {
        "course" => Ok(GroupBy::Course),
        "cohort-month" | "month" => Ok(GroupBy::CohortMonth),
        "none" => Ok(GroupBy::None),
        _ => Err("expected course, cohort-month or none".into()),
    }
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its id.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List the tenants.
    List,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = dotenvy::dotenv();
    let telemetry = Telemetry::init()?;
    let cli = Cli::parse();
    let outcome = run(cli).await;
    telemetry.shutdown();
    outcome
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let database = Database::open(&config.database()).await?;
            db::migrate(&database.pool).await?;
            eprintln!("migrations applied");
            database.close().await
        }
        Command::Tenant(command) => with_app(&config, async |app| tenant(app, command).await).await,
        Command::Token {
            tenant,
            role,
            sub,
            ttl,
        } => {
            let secret = minting_secret(&config)?;
            let issuer = TokenIssuer::new(&secret, &config.jwt_issuer, &config.jwt_audience);
            println!("{}", issuer.mint(tenant, sub, role, ttl)?);
            Ok(())
        }
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Command::Projections(ProjectionsCommand::Rebuild { tenant }) => {
            with_app(&config, async |app| rebuild(app, tenant).await).await
        }
        Command::Report(report) => {
            with_app(&config, async |app| run_report(app, report).await).await
        }
    }
}

/// Runs `work` on the application over the configured (and migrated) database, then closes it.
async fn with_app(
    config: &Config,
    work: impl AsyncFnOnce(&App) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let database = Database::open(&config.database()).await?;
    db::migrate(&database.pool).await?;
    let settings = AppSettings {
        keys: config.data_keys.clone(),
        ..AppSettings::default()
    };
    let app = App::build(database.pool.clone(), settings);
    let result = work(&app).await;
    drop(app);
    database.close().await?;
    result
}

async fn tenant(app: &App, command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create { name } => {
            println!(
                "{}",
                app.runtime()
                    .create_tenant(&name)
                    .await
                    .context("creating the tenant")?
            );
        }
        TenantCommand::List => {
            for tenant in app
                .runtime()
                .tenants()
                .await
                .context("listing the tenants")?
            {
                let created = tenant.created_at.to_rfc3339();
                println!("{}\t{created}\t{}", tenant.id, tenant.name);
            }
        }
    }
    Ok(())
}

/// The HS256 secret tokens are minted with: the configured one, or a private development
/// setup's own.
fn minting_secret(config: &Config) -> anyhow::Result<String> {
    match config.hs256_secret() {
        Some(secret) => Ok(secret.to_owned()),
        None if matches!(config.jwt_keys, JwtKeys::Unset) && config.database_url.is_none() => {
            dev_secret(&config.data_dir)
        }
        None => bail!(
            "minting needs JWT_SECRET (HS256); with public keys, tokens come from your identity provider"
        ),
    }
}

async fn rebuild(app: &App, tenant: Option<Uuid>) -> anyhow::Result<()> {
    let tenants = match tenant {
        Some(id) => vec![TenantId::from_uuid(id)],
        None => app
            .runtime()
            .tenants()
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect(),
    };
    for tenant in tenants {
        let started = std::time::Instant::now();
        let report = app
            .reads()
            .rebuild_projections(&Caller::operator(tenant), progress_printer())
            .await
            .with_context(|| format!("rebuilding tenant {tenant}"))?;
        clear_progress();
        println!(
            "{tenant}: {} events replayed -> {} courses, {} trainees, {} enrollments, {} submissions in {:.2} s",
            report.events,
            report.courses,
            report.trainees,
            report.enrollments,
            report.submissions,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Prints "replayed N events" on stderr as a replay goes, when stderr is a terminal.
fn progress_printer() -> impl FnMut(u64) {
    use std::io::IsTerminal;
    let interactive = std::io::stderr().is_terminal();
    move |events| {
        if interactive {
            eprint!("\rreplayed {events} events…");
        }
    }
}

fn clear_progress() {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[K");
    }
}

async fn run_report(app: &App, command: ReportCommand) -> anyhow::Result<()> {
    match command {
        ReportCommand::Duration {
            from,
            to,
            group_by,
            scope,
        } => {
            let spec = DurationSpec::new(from, to, group_by).map_err(|e| anyhow::anyhow!(e))?;
            let report = app
                .reads()
                .duration_report(
                    &scope.caller(),
                    spec,
                    scope.course_ids(),
                    scope.as_of,
                    progress_printer(),
                )
                .await
                .context("the duration report")?;
            clear_progress();
            print!("{}", cli_report::duration(&report, scope.json));
        }
        ReportCommand::Funnel { scope } => {
            let report = app
                .reads()
                .funnel_report(
                    &scope.caller(),
                    scope.course_ids(),
                    scope.as_of,
                    progress_printer(),
                )
                .await
                .context("the funnel report")?;
            clear_progress();
            print!("{}", cli_report::funnel(&report, scope.json));
        }
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let development = config.database_url.is_none();
    let database = Database::open(&config.database()).await?;
    db::migrate(&database.pool).await?;

    // With no keys configured, a private (development) setup gets a generated HS256 secret,
    // kept in the data folder so tokens survive restarts. A real deployment must configure keys.
    let fallback_secret = match (&config.jwt_keys, development) {
        (JwtKeys::Unset, true) => Some(dev_secret(&config.data_dir)?),
        (JwtKeys::Unset, false) => {
            bail!("configure token validation: JWT_SECRET, JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE")
        }
        _ => None,
    };
    let verifier = server::verifier(&config, fallback_secret.as_deref())?;

    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding {}", config.listen_addr))?;
    let address = listener.local_addr()?;

    let mut new_demo_tenant = None;
    if development {
        let (tenant, created) = demo_tenant(&database).await?;
        if created {
            new_demo_tenant = Some(tenant);
        }
        let secret = fallback_secret.as_deref().or(config.hs256_secret());
        eprintln!(
            "\ncoursetrail is ready (development: private PostgreSQL at {})",
            database.url
        );
        eprintln!("  console:   http://{address}/console/");
        eprintln!("  GraphiQL:  http://{address}/graphql");
        eprintln!("  tenant:    {tenant}");
        if let Some(secret) = secret {
            let issuer = TokenIssuer::new(secret, &config.jwt_issuer, &config.jwt_audience);
            let token = issuer.mint(
                tenant.as_uuid(),
                Uuid::now_v7(),
                Role::Admin,
                Duration::from_secs(12 * 3600),
            )?;
            // The fragment never reaches a server; the console moves it into the tab's
            // session storage and drops it from the address bar.
            eprintln!("  console, signed in as an admin (12 h):");
            eprintln!("  http://{address}/console/#token={token}");
            eprintln!("  admin token, for GraphiQL's headers:");
            eprintln!("  {{\"Authorization\": \"Bearer {token}\"}}\n");
        }
    } else {
        tracing::info!(address = %address, "coursetrail is ready");
    }

    let state = server::configured_state(
        &config,
        database.pool.clone(),
        database.report_pool.clone(),
        verifier,
    );
    if let Some(tenant) = new_demo_tenant {
        seed_demo(state.app.clone(), tenant);
    }
    server::serve_on(listener, state, server::shutdown_signal()).await?;
    tracing::info!("shutting down");
    database.close().await
}

/// Writes the new Demo tenant's sample history in the background.
#[cfg(feature = "dev-tools")]
fn seed_demo(app: coursetrail::app::App, tenant: TenantId) {
    tokio::spawn(async move {
        match coursetrail::demo::seed(&app, tenant).await {
            Ok(()) => tracing::info!("the Demo tenant's sample history is written"),
            Err(error) => tracing::warn!(error = %error, "writing the sample history failed"),
        }
    });
}

/// Without the dev tools the Demo tenant has no sample history (and a development setup, with
/// no DATABASE_URL, cannot start: there is no private cluster).
#[cfg(not(feature = "dev-tools"))]
fn seed_demo(_app: coursetrail::app::App, _tenant: TenantId) {}

/// The first tenant, created as "Demo" on a fresh development database; and whether it is new
/// (it then gets a sample history, [`coursetrail::demo`]).
async fn demo_tenant(database: &Database) -> anyhow::Result<(TenantId, bool)> {
    let mut tx = database.pool.begin().await?;
    let tenants = store::list_tenants(&mut tx).await?;
    let tenant = match tenants.first() {
        Some((id, _, _)) => (*id, false),
        None => (store::create_tenant(&mut tx, "Demo").await?, true),
    };
    tx.commit().await?;
    Ok(tenant)
}

/// The development HS256 secret under the data folder, created on first use (mode 0600).
fn dev_secret(data_dir: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("dev-jwt-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        return Ok(secret.trim().to_owned());
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    Ok(secret)
}
