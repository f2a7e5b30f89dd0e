//! The web wallet in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`; `.ci/run` installs them, and
//! without them the test prints a SKIP line).
//!
//! A node process mines on the dev preset (its wallet earns the rewards). In
//! the page: the address and balance appear, a signed transfer is sent and
//! followed until it is confirmed in a block, that block's card opens a
//! dialog listing the transfer, and an unsigned transfer shows its rejection.
//! Screenshots go to `target/browser-wallet.png` (laptop width) and
//! `target/browser-wallet-phone.png` (phone width).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};

/// `target/` (the parent of the profile directory holding this test).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    exe.parent().and_then(Path::parent).and_then(Path::parent).map(Path::to_path_buf).expect("target dir")
}

async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the text of `css` satisfies `ok`; returns it.
async fn wait_text(c: &Client, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let t = text(c, css).await;
        if ok(&t) {
            return t;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; {css} shows {t:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.expect(css);
    e.clear().await.expect("clear");
    e.send_keys(value).await.expect("type");
}

/// The height on the first block card (0 when none shows).
async fn first_card_height(c: &Client) -> u64 {
    match c.find(Locator::Css("#blocks .block-card")).await {
        Ok(e) => e.attr("data-height").await.ok().flatten().and_then(|h| h.parse().ok()).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Headless Chromium under chromedriver, or `None` (after a SKIP line
/// naming `test`) when they are not installed.
async fn open_browser(test: &str) -> Option<(Proc, Client)> {
    let (Some(driver), Some(browser)) =
        (find_program(&["chromedriver"]), find_program(&["chromium", "chromium-browser", "google-chrome"]))
    else {
        println!("SKIP {test}: chromium and chromedriver not found (apt install chromium chromium-driver)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let mut cmd = Command::new(&driver);
    cmd.arg(format!("--port={port}"));
    let driver = Proc::spawn("chromedriver", cmd);
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {
            "binary": browser,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1100"]
        }
    }))
    .expect("caps");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let c = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "chromedriver did not start: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    Some((driver, c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_wallet_sends_confirms_and_rejects() {
    let _one = SERIAL.lock().await;
    let Some((_driver, c)) = open_browser("the_web_wallet_sends_confirms_and_rejects").await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start("node", &dir.path().join("n"), &NodeOpts { mine: true, ..Default::default() }).await;
    let api = Api::default();
    let status = api.status(&node.http).await.expect("status");
    let wallet = status["wallet"].as_str().expect("wallet").to_owned();

    c.goto(&format!("{}/", node.http)).await.expect("open the page");
    // The wallet card: the node's address, and a balance once it has mined.
    let shown = wait_text(&c, "#address", "the address", |t| t.len() == 66).await;
    assert_eq!(shown, wallet);
    wait_text(&c, "#balance", "a balance from mining", |t| t.replace(',', "").parse::<u64>().is_ok_and(|b| b > 1_000))
        .await;

    // The Copy button copies the address (or selects it where the clipboard
    // is not available) and says so.
    c.find(Locator::Css("#copy")).await.expect("copy").click().await.expect("click copy");
    wait_text(&c, "#copy", "the copy confirmation", |t| t == "Copied").await;

    // 66 hex digits that are no point on the curve: refused, naming why
    // (before: accepted, and the coins burnt).
    let not_a_key = "02".to_owned() + &"5a".repeat(32);
    fill(&c, "#to", &not_a_key).await;
    fill(&c, "#amount", "100").await;
    c.find(Locator::Css("#send")).await.expect("send").click().await.expect("click");
    wait_text(&c, "#result", "the refusal of a recipient that is no key", |t| t.contains("compressed secp256k1")).await;

    // A signed transfer, followed from pending to confirmed.
    let bob = toy::chain::Keypair::from_seed(b"browser-bob").address().to_hex();
    fill(&c, "#to", &bob).await;
    fill(&c, "#amount", "100").await;
    fill(&c, "#fee", "1").await;
    let sign = c.find(Locator::Css("#sign")).await.expect("sign box");
    assert_eq!(sign.prop("checked").await.expect("prop").as_deref(), Some("true"), "signing is on by default");
    c.find(Locator::Css("#send")).await.expect("send").click().await.expect("click");
    let sent =
        wait_text(&c, "#result", "the transaction id", |t| t.starts_with("Sent:") || t.starts_with("Confirmed:")).await;
    // Pending is amber, not the green of success (unless it was already
    // confirmed when looked at).
    let class = c.find(Locator::Css("#result")).await.expect("result").attr("class").await.expect("class");
    let now = text(&c, "#result").await;
    assert!(class.as_deref() == Some("result pending") || now.starts_with("Confirmed:"), "{class:?} for {now:?}");
    let id = sent.split_whitespace().nth(1).expect("id").to_owned();
    assert_eq!(id.len(), 64, "{sent}");
    let confirmed = wait_text(&c, "#result", "the confirmation", |t| t.starts_with("Confirmed:")).await;
    let height: u64 = confirmed
        .split('#')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|h| h.parse().ok())
        .expect("block height in the confirmation");

    // Its block card opens a dialog listing the transfer.
    // A dev chain can mine a page of blocks within a second: when the tip
    // has moved on, page back to it.
    let card = format!("#blocks .block-card[data-height=\"{height}\"]");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let card = loop {
        if let Ok(e) = c.find(Locator::Css(&card)).await {
            break e;
        }
        let lowest = match c.find(Locator::Css("#blocks .block-card:last-child")).await {
            Ok(e) => e.attr("data-height").await.ok().flatten().and_then(|h| h.parse::<u64>().ok()),
            Err(_) => None,
        };
        if lowest.is_some_and(|l| l > height) {
            c.find(Locator::Css("#older")).await.expect("older").click().await.expect("click older");
        }
        assert!(tokio::time::Instant::now() < deadline, "no card for block {height}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    card.click().await.expect("open block");
    wait_text(&c, "#dialog-title", "the dialog", |t| t == format!("Block #{height}")).await;
    wait_text(&c, "#dialog-txs", "the transfer in the dialog", |t| t.contains(&id[..10])).await;
    let shots = target_dir();
    std::fs::write(shots.join("browser-wallet-dialog.png"), c.screenshot().await.expect("screenshot")).expect("save");
    c.find(Locator::Css("#block-dialog .close")).await.expect("close").click().await.expect("close dialog");

    // Paging: "Older" shows the cards below the page, "Newer" follows the
    // tip again.
    let newest = first_card_height(&c).await;
    c.find(Locator::Css("#older")).await.expect("older").click().await.expect("click older");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while first_card_height(&c).await >= newest {
        assert!(tokio::time::Instant::now() < deadline, "the older page never showed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // "Newer" until the page follows the tip again (more than one page
    // back when the dialog's block was).
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !text(&c, "#page-info").await.contains("following the tip") {
        if let Ok(newer) = c.find(Locator::Css("#newer")).await
            && newer.is_enabled().await.unwrap_or(false)
        {
            newer.click().await.expect("click newer");
        }
        assert!(tokio::time::Instant::now() < deadline, "the page never followed the tip again");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Mining on demand: the result says whether the block made the best
    // chain (the node's own miner may win the height), and the button is
    // back afterwards.
    c.find(Locator::Css("#mine")).await.expect("mine button").click().await.expect("click mine");
    let mined = wait_text(&c, "#result", "the mining result", |t| {
        t.starts_with("Mined block #")
            || t.contains("side branch")
            || t.starts_with("Another block came first")
            || t.starts_with("Mining failed")
    })
    .await;
    assert!(!mined.starts_with("Mining failed"), "{mined}");
    wait_text(&c, "#mine", "the mine button back", |t| t == "Mine a block").await;

    // Unsigned: the rejection is shown.
    fill(&c, "#amount", "5").await;
    c.find(Locator::Css("#sign")).await.expect("sign").click().await.expect("uncheck");
    c.find(Locator::Css("#send")).await.expect("send").click().await.expect("click");
    let rejected = wait_text(&c, "#result", "the rejection", |t| t.starts_with("Rejected:")).await;
    assert!(rejected.contains("bad signature"), "{rejected}");
    std::fs::write(shots.join("browser-wallet.png"), c.screenshot().await.expect("screenshot")).expect("save");

    // Phone width still shows the wallet and the send form.
    c.set_window_size(390, 844).await.expect("resize");
    assert_eq!(text(&c, "#address").await, wallet);
    std::fs::write(shots.join("browser-wallet-phone.png"), c.screenshot().await.expect("screenshot")).expect("save");

    // The node goes away: a banner says so and the numbers are greyed out.
    let mut node = node;
    node.proc.interrupt().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let banner = c.find(Locator::Css("#offline")).await.expect("banner");
        if banner.is_displayed().await.unwrap_or(false) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no banner after the node stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body = c.find(Locator::Css("body")).await.expect("body").attr("class").await.expect("class");
    assert!(body.is_some_and(|b| b.contains("stale")), "stale numbers are greyed out");
    std::fs::write(shots.join("browser-wallet-offline.png"), c.screenshot().await.expect("screenshot")).expect("save");
    println!("screenshots in {}", shots.display());
    c.close().await.expect("close browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_wallet_on_the_workshop_chain_leaves_out_times_and_fees() {
    let _one = SERIAL.lock().await;
    let test = "the_web_wallet_on_the_workshop_chain_leaves_out_times_and_fees";
    let Some((_driver, c)) = open_browser(test).await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    // Difficulty 4 and no miner threads: blocks come from the page's button.
    let node = toy::workshop_node::WorkshopConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: Some(dir.path().join("w")),
        difficulty: 4,
        http: Some("127.0.0.1:0".into()),
        ..Default::default()
    }
    .launch()
    .await
    .expect("launch");
    let me = node.key().public_hex();
    c.goto(&format!("http://{}/", node.http_addr().expect("http"))).await.expect("open the page");
    wait_text(&c, "#status", "the workshop chain named", |t| t.starts_with("workshop chain")).await;
    assert_eq!(wait_text(&c, "#address", "the P-192 key", |t| t.len() == 50).await, me);
    // No fee field, no interval chart (no timestamps to draw it from).
    for hidden in ["#fee-label", "#intervals-box"] {
        let e = c.find(Locator::Css(hidden)).await.expect(hidden);
        assert!(!e.is_displayed().await.expect("displayed"), "{hidden} is left out");
    }
    let mine = |c: &Client| {
        let c = c.clone();
        async move {
            c.find(Locator::Css("#mine")).await.expect("mine").click().await.expect("click mine");
            wait_text(&c, "#result", "a mined block", |t| t.starts_with("Mined block") || t.contains("failed")).await
        }
    };
    let mined = mine(&c).await;
    assert!(mined.starts_with("Mined block #1"), "{mined}");
    wait_text(&c, "#balance", "the reward", |t| t.replace(',', "") == "10000").await;

    // A toy-sized address is refused by the page itself, naming the size.
    fill(&c, "#to", &"02".repeat(33)).await;
    fill(&c, "#amount", "100").await;
    c.find(Locator::Css("#send")).await.expect("send").click().await.expect("click");
    wait_text(&c, "#result", "the size named", |t| t.contains("50 hex digits")).await;
    // A transfer to a P-192 key, pending then confirmed by the next block.
    let friend = toy::workshop::SecretKey::generate().public_hex();
    fill(&c, "#to", &friend).await;
    c.find(Locator::Css("#send")).await.expect("send").click().await.expect("click");
    wait_text(&c, "#result", "pending", |t| t.starts_with("Sent:")).await;
    let mined = mine(&c).await;
    assert!(mined.starts_with("Mined block #2"), "{mined}");
    wait_text(&c, "#result", "confirmed", |t| t.starts_with("Confirmed:")).await;

    // Block cards carry no time; the dialog lists the transfer, no fee column.
    wait_text(&c, "#blocks .block-card", "block #2 on top", |t| t.starts_with("#2")).await;
    let card = text(&c, "#blocks .block-card").await;
    let timed = |l: &str| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(':');
    assert!(!card.lines().any(timed), "no time on the card: {card:?}");
    c.find(Locator::Css("#blocks .block-card")).await.expect("card").click().await.expect("open");
    wait_text(&c, "#dialog-txs", "the transfer listed", |t| t.contains("100")).await;
    let head = c.find(Locator::Css("#fee-head")).await.expect("fee head");
    assert!(!head.is_displayed().await.expect("displayed"), "no fee column");
    let shots = target_dir();
    std::fs::write(shots.join("browser-workshop.png"), c.screenshot().await.expect("screenshot")).expect("save");
    c.close().await.expect("close browser");
    node.shutdown().await;
}
