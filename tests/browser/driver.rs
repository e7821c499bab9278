//! Headless Chromium driven over WebDriver: one `chromedriver` (Debian's `chromium-driver`) per
//! test, on a free port, with a fresh profile, stopped with the test.

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const CHROMEDRIVER: &str = "chromedriver";
/// How long any single wait for the page lasts before the test fails.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Browser {
    pub client: Client,
    _driver: DriverGroup,
    _profile: TempProfile,
}

/// chromedriver in a process group of its own, with the Chromium it starts: dropping it (also
/// when a test panics) ends the whole group, so no browser outlives its test.
struct DriverGroup(Child);

impl Drop for DriverGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id() {
            // The group's id is the driver's pid (`process_group(0)`); `-pid` names the group.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A browser profile of its own, removed afterwards.
struct TempProfile(std::path::PathBuf);

impl Drop for TempProfile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// A headless Chromium at a laptop's screen size. Without chromedriver the test fails
    /// with what to install (CI installs it: `.ci/run`).
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{CHROMEDRIVER} could not start ({e}); the browser tests need Chromium and \
                     its driver: apt-get install chromium chromium-driver"
                )
            });
        let profile = std::env::temp_dir().join(format!("coursetrail-chromium-{port}"));
        let mut capabilities = Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "args": chromium_args(&profile) }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = connect(&url, capabilities).await;
        Browser {
            client,
            _driver: DriverGroup(driver),
            _profile: TempProfile(profile),
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Evaluates `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.expect("script")
    }

    /// Waits until `script` returns something truthy, and returns it.
    pub async fn until(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        let started = Instant::now();
        loop {
            let value = self.eval(script, args.clone()).await;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!(0)
                && value != json!("");
            if truthy {
                return value;
            }
            assert!(
                started.elapsed() < PAGE_TIMEOUT,
                "timed out waiting for {what}; page text: {}",
                self.eval("return document.body.innerText.slice(0, 2000)", vec![])
                    .await
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The element with this `data-testid`, once it is there.
    pub async fn by_test_id(&self, id: &str) -> fantoccini::elements::Element {
        let selector = format!("[data-testid=\"{id}\"]");
        self.until(
            id,
            "return document.querySelector(arguments[0]) !== null",
            vec![json!(selector)],
        )
        .await;
        self.client
            .find(Locator::Css(&selector))
            .await
            .expect("element")
    }

    pub async fn click(&self, id: &str) {
        self.by_test_id(id).await.click().await.expect("click");
    }

    pub async fn type_into(&self, id: &str, text: &str) {
        let field = self.by_test_id(id).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

fn chromium_args(profile: &std::path::Path) -> Vec<String> {
    [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1366,768",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// Connects once chromedriver listens (it takes a moment to start).
async fn connect(url: &str, capabilities: Capabilities) -> Client {
    let started = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(url)
            .await
        {
            Ok(client) => return client,
            Err(error) if started.elapsed() < PAGE_TIMEOUT => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no WebDriver session with Chromium: {error}"),
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
