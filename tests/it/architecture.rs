//! The checks a reader makes of the source tree, kept true by a test:
//! every file of `src/` holds one concern (a file past 700 lines usually
//! holds two), and imports go one way (docs/architecture.md): no two rooms
//! of `src/`, and no two files beside each other, import from each other.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Lines past which a source file is split by concern.
const MAX_LINES: usize = 700;

/// A module's path below `crate`, as `use crate::...` names it.
type ModulePath = Vec<String>;

#[test]
fn no_source_file_is_over_700_lines() {
    let long: Vec<String> = source_files()
        .into_iter()
        .filter(|file| file.file_name().is_none_or(|name| name != "tests.rs"))
        .filter_map(|file| {
            let lines = std::fs::read_to_string(&file).ok()?.lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines})", file.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these by concern: {long:?}");
}

#[test]
fn no_two_modules_import_each_other() {
    let files = source_files();
    let modules: HashMap<ModulePath, PathBuf> = files
        .iter()
        .map(|file| (module_of(file), file.clone()))
        .collect();
    let mut edges = BTreeSet::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for import in imports(&text) {
            if let Some(target) = resolve(module, &import, &modules)
                && &target != module
            {
                edges.insert((module.clone(), target));
            }
        }
    }
    // Rooms: the first level below crate. Siblings: the two children of
    // the modules' closest common parent that lead to them.
    let mut pairs = BTreeSet::new();
    for (from, to) in &edges {
        let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
        if common < from.len() && common < to.len() {
            pairs.insert((from[..=common].to_vec(), to[..=common].to_vec()));
        }
    }
    let circles: Vec<String> = pairs
        .iter()
        .filter(|(a, b)| a < b && pairs.contains(&(b.clone(), a.clone())))
        .map(|(a, b)| format!("{} <-> {}", a.join("::"), b.join("::")))
        .collect();
    assert!(
        circles.is_empty(),
        "these import each other; one of them should import only the other: {circles:?}"
    );
}

fn source_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a readable source folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    assert!(!found.is_empty(), "no source files found");
    found
}

fn module_of(file: &Path) -> ModulePath {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let relative = file.strip_prefix(&src).expect("a file under src/");
    let mut path: ModulePath = relative
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if path
        .last()
        .is_some_and(|last| ["mod", "lib", "main"].contains(&last.as_str()))
    {
        path.pop();
    }
    path
}

/// Each `use` of the file outside its unit tests, as the paths it names:
/// `use a::{b, c::d}` names `a::b` and `a::c`.
fn imports(text: &str) -> Vec<Vec<String>> {
    let code = text
        .split_once("#[cfg(test)]\nmod tests {")
        .map_or(text, |(code, _)| code);
    let mut paths = Vec::new();
    for statement in code.split(';') {
        let Some(start) = statement.lines().position(|line| is_use(line.trim_start())) else {
            continue;
        };
        let statement: String = statement.lines().skip(start).collect::<Vec<_>>().join(" ");
        let tree = statement.trim_start();
        let tree = tree[tree.find("use ").map_or(0, |at| at + 4)..].trim();
        let (base, names) = match tree.split_once("::{") {
            Some((base, rest)) => (base, top_level_names(rest.trim_end_matches('}'))),
            None => (tree, vec![String::new()]),
        };
        let base: Vec<String> = base.split("::").map(|s| s.trim().to_owned()).collect();
        for name in names {
            let mut path = base.clone();
            let first = name.split("::").next().unwrap_or("").trim();
            let first = first.split_whitespace().next().unwrap_or("");
            if !first.is_empty() && first != "self" {
                path.push(first.to_owned());
            }
            paths.push(path);
        }
    }
    paths
}

fn is_use(line: &str) -> bool {
    line.starts_with("use ") || (line.starts_with("pub") && line.contains(" use "))
}

fn top_level_names(list: &str) -> Vec<String> {
    let mut names = Vec::new();
    let (mut depth, mut current) = (0, String::new());
    for c in list.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                names.push(std::mem::take(&mut current).trim().to_owned());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    names.push(current.trim().to_owned());
    names.retain(|name| !name.is_empty());
    names
}

/// The module of the crate that `import`, used in `module`, reaches:
/// the longest known module its path begins with.
fn resolve(
    module: &ModulePath,
    import: &[String],
    modules: &HashMap<ModulePath, PathBuf>,
) -> Option<ModulePath> {
    let (first, rest) = import.split_first()?;
    let absolute: ModulePath = match first.as_str() {
        "crate" => rest.to_vec(),
        "self" => module.iter().chain(rest).cloned().collect(),
        "super" => {
            let mut base = module.clone();
            base.pop();
            let mut rest = rest;
            while let Some(("super", after)) = rest.split_first().map(|(s, a)| (s.as_str(), a)) {
                base.pop();
                rest = after;
            }
            base.into_iter().chain(rest.iter().cloned()).collect()
        }
        _ => {
            let child: ModulePath = module.iter().chain([first]).cloned().collect();
            if !modules.contains_key(&child) {
                return None;
            }
            module.iter().chain(import).cloned().collect()
        }
    };
    (1..=absolute.len())
        .rev()
        .map(|length| absolute[..length].to_vec())
        .find(|prefix| modules.contains_key(prefix))
}
