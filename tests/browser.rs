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

/// Runs `script` in the page and returns its answer.
async fn js(c: &Client, script: &str) -> serde_json::Value {
    c.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// The layout the screenshots once showed broken, checked at the current
/// width (`width` names it in failures).
async fn page_layout_holds(c: &Client, width: &str) {
    // The address wraps, if at all, into lines of many characters, never
    // one character alone.
    let lines = js(
        c,
        "const r = document.createRange(); r.selectNodeContents(document.getElementById('address'));
         const rows = new Map(); for (const b of r.getClientRects()) rows.set(Math.round(b.top), (rows.get(Math.round(b.top)) || 0) + b.width);
         return [...rows.values()];",
    )
    .await;
    let widths: Vec<f64> = lines.as_array().into_iter().flatten().filter_map(serde_json::Value::as_f64).collect();
    assert!(!widths.is_empty() && widths.iter().all(|w| *w > 60.0), "{width}: address lines {widths:?}");
    if width == "laptop" {
        assert_eq!(widths.len(), 1, "the address fits one line at laptop width");
        // The wallet card is as tall as what it holds, not stretched to the
        // send card's height.
        let stretch = js(
            c,
            "const w = document.getElementById('wallet-card'), s = document.getElementById('send-card');
             return [w.getBoundingClientRect().height, s.getBoundingClientRect().height];",
        )
        .await;
        let h: Vec<f64> = stretch.as_array().into_iter().flatten().filter_map(serde_json::Value::as_f64).collect();
        assert!(h.len() == 2 && h[0] < h[1], "the wallet card does not stretch: {h:?}");
    }
    // Charts have axes with units and a legend; the hash rate comes from
    // the node's own history, so it is drawn right after loading.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let rate = text(c, "#rate-chart").await;
        let drawn = js(c, "return document.querySelectorAll('#rate-chart polyline').length").await;
        // A positive sample (the node mines at kH/s or more): the chart's
        // top label names it with its unit.
        if drawn.as_u64().unwrap_or(0) > 0 && (rate.contains("MH/s") || rate.contains("kH/s")) && rate.contains("now") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{width}: the hash-rate chart shows {rate:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let bars = text(c, "#intervals").await;
    assert!(bars.contains(" s") && bars.contains('#'), "{width}: interval axes: {bars:?}");
    for legend in ["hashes per second", "seconds from each block", "this node", "best chain"] {
        let found = js(c, &format!("return [...document.querySelectorAll('.legend')].some(l => l.textContent.includes('{legend}') && l.offsetParent !== null)")).await;
        assert_eq!(found, true, "{width}: a visible legend says {legend:?}");
    }
    // The peer graph fits its column; the tree's background spans its box
    // and its labels are readable.
    let fits = js(
        c,
        "const g = document.getElementById('graph').getBoundingClientRect(), card = document.getElementById('network-card').getBoundingClientRect();
         return g.width > 100 && g.left >= card.left && g.right <= card.right - 8",
    )
    .await;
    assert_eq!(fits, true, "{width}: the peer graph fits its column");
    let tree = js(
        c,
        "const t = document.getElementById('tree'), box = t.parentElement;
         const label = t.querySelector('text');
         return [t.getBoundingClientRect().width >= box.clientWidth - 0.5, getComputedStyle(box).backgroundColor, label ? Number(label.getAttribute('font-size')) : 0];",
    )
    .await;
    assert_eq!(tree[0], true, "{width}: the tree spans its box");
    assert_ne!(tree[1], "rgba(0, 0, 0, 0)", "{width}: the box has the background");
    assert!(tree[2].as_f64().is_some_and(|f| f >= 10.0), "{width}: tree labels are readable: {tree}");
}

/// The open block dialog lists the block's details and full transaction
/// ids, and (on a phone) keeps everything inside it.
async fn block_dialog_shows_everything(c: &Client, width: &str) {
    let meta = wait_text(c, "#dialog-meta", "the block's details", |t| t.contains("nonce")).await;
    for field in ["hash", "parent", "miner", "nonce", "target", "time", "reward"] {
        assert!(meta.contains(field), "{width}: the dialog names the {field}: {meta:?}");
    }
    let ids = js(
        c,
        "return [...document.querySelectorAll('#dialog-txs td[data-label=id] code')].map(e => e.textContent.length)",
    )
    .await;
    assert!(ids.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(|n| n == 64)), "{width}: full ids: {ids}");
    let to_shown = js(c, "const td = document.querySelector('#dialog-txs td[data-label=to]'); return !!td && td.offsetParent !== null && td.getBoundingClientRect().width > 0").await;
    assert_eq!(to_shown, true, "{width}: the recipient stays visible");
    let inside =
        js(c, "const d = document.getElementById('block-dialog'); return d.scrollWidth <= d.clientWidth + 1").await;
    assert_eq!(inside, true, "{width}: long hashes wrap inside the dialog");
}

/// In the open block dialog: the parent is a link to its block; genesis
/// reads sensibly.
async fn parent_link_and_genesis(c: &Client, base: &str) {
    let title = text(c, "#dialog-title").await;
    c.find(Locator::Css("#dialog-meta button.link")).await.expect("parent link").click().await.expect("open parent");
    wait_text(c, "#dialog-title", "the parent's dialog", |t| t != title && t.starts_with("Block #")).await;
    let genesis = reqwest::get(format!("{base}/api/blocks/0"))
        .await
        .expect("genesis")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    let hash = genesis["hash"].as_str().expect("hash").to_owned();
    c.execute("openBlock(arguments[0])", vec![serde_json::json!(hash)]).await.expect("open genesis");
    wait_text(c, "#dialog-title", "the genesis dialog", |t| t.contains("genesis")).await;
    let note = wait_text(c, "#dialog-note", "the genesis explained", |t| t.contains("not mined")).await;
    assert!(note.contains("chain id"), "{note}");
    assert!(text(c, "#dialog-meta").await.contains("nobody"), "no unexplained zero miner");
}

/// `/docs`: every operation has its codes, an example and a working
/// "Try it out"; nested schemas are expanded; the toychain routes mapped.
async fn api_docs_page_works(c: &Client, base: &str) {
    c.goto(&format!("{base}/docs")).await.expect("open docs");
    wait_text(c, "#eps", "the operations", |t| t.contains("/api/status")).await;
    let counts = js(c, "return [document.querySelectorAll('#eps .ep').length, document.querySelectorAll('#eps .ep details.try').length,
        [...document.querySelectorAll('#eps .ep')].filter(e => [...e.querySelectorAll('p.schema')].some(p => p.textContent === 'example response:')).length]").await;
    let n = counts[0].as_u64().unwrap_or(0);
    assert!(n >= 17, "every operation is listed: {counts}");
    assert_eq!(counts[1].as_u64(), Some(n), "each has Try it out");
    assert_eq!(counts[2].as_u64(), Some(n), "each has an example response: {counts}");
    let mine = text(c, "[id='op-post-/api/mine'] table.codes").await;
    for code in ["409", "429", "503", "403"] {
        assert!(mine.contains(code), "/api/mine documents {code}: {mine:?}");
    }
    // Status's chain profile is expanded in place.
    let status = text(c, "#schema-Status").await;
    assert!(status.contains("address_digits"), "nested schemas expanded: {status:?}");
    let routes = text(c, "table.routes").await;
    for r in ["/mine", "/chain", "/transactions/new", "/nodes/register", "/nodes/resolve"] {
        assert!(routes.contains(r), "the toychain route {r} is mapped");
    }
    // Try it out: GET /api/status answers here.
    let op = "[id='op-get-/api/status'] details.try";
    c.find(Locator::Css(&format!("{op} summary"))).await.expect("try").click().await.expect("open try");
    c.find(Locator::Css(&format!("{op} button"))).await.expect("send").click().await.expect("send");
    wait_text(c, &format!("{op} pre.answer"), "the answer", |t| t.starts_with("200") && t.contains("\"height\"")).await;
    // And a write: POST /api/mine from the page (409 or 200: the node mines too).
    let op = "[id='op-post-/api/mine'] details.try";
    c.find(Locator::Css(&format!("{op} summary"))).await.expect("try").click().await.expect("open try");
    c.find(Locator::Css(&format!("{op} button"))).await.expect("send").click().await.expect("send");
    wait_text(c, &format!("{op} pre.answer"), "the mine answer", |t| t.starts_with("200") || t.starts_with("409"))
        .await;
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
    wait_text(&c, "#dialog-txs", "the transfer in the dialog", |t| t.contains(&id)).await;
    block_dialog_shows_everything(&c, "laptop").await;
    let shots = target_dir();
    std::fs::write(shots.join("browser-wallet-dialog.png"), c.screenshot().await.expect("screenshot")).expect("save");
    parent_link_and_genesis(&c, &node.http).await;
    std::fs::write(shots.join("browser-wallet-genesis.png"), c.screenshot().await.expect("screenshot")).expect("save");
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
    // The button is a normal button under the heading, its result next to it.
    let in_row = c.execute("return document.getElementById('mine').parentElement.className", vec![]).await.expect("js");
    assert_eq!(in_row, "mine-row", "the mine button is not part of the heading");
    c.find(Locator::Css("#mine")).await.expect("mine button").click().await.expect("click mine");
    let mined = wait_text(&c, "#mine-result", "the mining result", |t| {
        t.starts_with("Mined block #")
            || t.contains("side branch")
            || t.starts_with("Mining stopped:")
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

    page_layout_holds(&c, "laptop").await;
    // A width where an address breaking anywhere left one character alone.
    c.set_window_size(1095, 1000).await.expect("resize");
    page_layout_holds(&c, "1095 px").await;
    c.set_window_size(1280, 1100).await.expect("resize");

    // Phone width still shows the wallet and the send form.
    c.set_window_size(390, 844).await.expect("resize");
    page_layout_holds(&c, "phone").await;
    let held = api.get(&node.http, &format!("/api/blocks/{height}")).await.expect("block");
    let held = held.1["hash"].as_str().expect("hash").to_owned();
    c.execute("openBlock(arguments[0])", vec![serde_json::json!(held)]).await.expect("open the block");
    wait_text(&c, "#dialog-title", "the dialog at phone width", |t| t == format!("Block #{height}")).await;
    block_dialog_shows_everything(&c, "phone").await;
    std::fs::write(shots.join("browser-wallet-dialog-phone.png"), c.screenshot().await.expect("screenshot"))
        .expect("save");
    c.find(Locator::Css("#block-dialog .close")).await.expect("close").click().await.expect("close dialog");
    c.set_window_size(1280, 1100).await.expect("resize");
    api_docs_page_works(&c, &node.http).await;
    std::fs::write(shots.join("browser-docs.png"), c.screenshot().await.expect("screenshot")).expect("save");
    c.goto(&format!("{}/", node.http)).await.expect("back to the page");
    c.set_window_size(390, 844).await.expect("resize");
    wait_text(&c, "#address", "the address again", |t| t.len() == 66).await;
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
            wait_text(&c, "#mine-result", "a mined block", |t| t.starts_with("Mined block") || t.contains("failed"))
                .await
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
