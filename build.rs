//! Puts the web demo's browser libraries, STOMP.js and sockjs-client, where
//! `src/transport/web_demo.rs` builds them into the binary. They come from
//! npm, pinned by `web-demo/package-lock.json`: from `web-demo/node_modules`
//! when `npm ci` ran there (`./test.sh` runs it), else installed into the
//! build's own directory. Without Node.js the relay still builds; the demo
//! page then says what to install.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Each library: the file the page loads, and where npm puts it.
const BUNDLES: &[(&str, &str)] = &[
    (
        "stomp.umd.min.js",
        "node_modules/@stomp/stompjs/bundles/stomp.umd.min.js",
    ),
    (
        "sockjs.min.js",
        "node_modules/sockjs-client/dist/sockjs.min.js",
    ),
];

fn main() {
    let demo = Path::new("web-demo");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=web-demo/package.json");
    println!("cargo:rerun-if-changed=web-demo/package-lock.json");
    let installed_in = |root: &Path| BUNDLES.iter().all(|(_, path)| root.join(path).is_file());
    // Only files that exist: cargo takes a missing one for changed and would
    // run this script, and rebuild the relay, on every build. Before `npm ci`
    // ran in web-demo/, the folder itself is watched, so that the install is
    // noticed when it happens.
    if installed_in(demo) {
        for (_, installed) in BUNDLES {
            println!("cargo:rerun-if-changed=web-demo/{installed}");
        }
    } else {
        println!("cargo:rerun-if-changed=web-demo");
    }

    let root = if installed_in(demo) {
        Some(demo.to_owned())
    } else {
        let npm = out.join("npm");
        (installed_in(&npm) || npm_ci(demo, &npm)).then_some(npm)
    };

    for (name, installed) in BUNDLES {
        let target = out.join(name);
        let copied = root
            .as_ref()
            .is_some_and(|root| std::fs::copy(root.join(installed), &target).is_ok());
        if !copied {
            // app.js finds the library missing and says what to install.
            std::fs::write(
                &target,
                format!("// {name}: built without Node.js and npm\n"),
            )
            .expect("OUT_DIR is writable");
        }
    }
}

/// Installs the demo's locked packages into `into`; false, with a warning
/// saying what to install, when npm is missing or fails.
fn npm_ci(demo: &Path, into: &Path) -> bool {
    let prepared = std::fs::create_dir_all(into).is_ok()
        && ["package.json", "package-lock.json"]
            .iter()
            .all(|file| std::fs::copy(demo.join(file), into.join(file)).is_ok());
    let installed = prepared
        && Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(into)
            .status()
            .is_ok_and(|status| status.success());
    if !installed {
        println!(
            "cargo:warning=the web demo is built without STOMP.js and sockjs-client: install Node.js and npm (Debian: apt-get install nodejs npm), then build again"
        );
    }
    installed
}
