//! A useful `service.name` for processes run by an interpreter.
//!
//! "python3" or "java" names the runtime, not the service. When a process runs one
//! of these interpreters and sets no OTel name, the name is taken from what it runs:
//!
//! | interpreter | command line                        | service name      |
//! |-------------|-------------------------------------|-------------------|
//! | python      | `python3 -u /srv/app.py`            | `app`             |
//! | python      | `python3 -m http.server 8000`       | `http.server`     |
//! | node        | `node --require x server.js`        | `server`          |
//! | ruby / perl / php | `ruby bin/rails s`            | `rails`           |
//! | java        | `java -Xmx1g -jar billing-1.2.jar`  | `billing`         |
//! | java        | `java -cp lib/* com.acme.Main`      | `com.acme.Main`   |
//! | java        | `java -m com.acme/com.acme.Main`    | `com.acme`        |
//!
//! Rules: interpreter options are skipped (including the ones that take a separate
//! value, e.g. `-W x`, `-cp x`, `-r x`); the first remaining argument is the
//! program, named by its file stem. Generic stems (`index`, `main`, `__main__`)
//! are replaced by the nearest parent directory that is not a build/source folder
//! (`dist`, `build`, `out`, `lib`, `src`, `bin`), resolving relative paths against
//! the process's working directory: `node /srv/checkout/dist/index.js` ->
//! `checkout`. Jar names lose a trailing version (`-1.2.3`, `-0.1-SNAPSHOT`).
//! Inline code (`python -c`, `node -e`, `ruby -e`, `perl -e`, `php -r`), stdin
//! (`-`) or no program at all gives `None`, so the caller falls back to the
//! executable name.

use std::path::{Component, Path, PathBuf};

/// Interpreter families Sonde recognises by executable name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpreter {
    Python,
    Node,
    Ruby,
    Java,
    Perl,
    Php,
}

/// The interpreter an executable basename denotes: `python3.11`, `node`, `nodejs`,
/// `ruby3.2`, `java`, `perl5.36.0`, `php8.2` (a version suffix of digits and dots is
/// allowed; `php-fpm` is a server, not an interpreter).
pub fn interpreter(exe_name: &str) -> Option<Interpreter> {
    const FAMILIES: &[(&str, Interpreter)] = &[
        ("python", Interpreter::Python),
        ("nodejs", Interpreter::Node),
        ("node", Interpreter::Node),
        ("ruby", Interpreter::Ruby),
        ("java", Interpreter::Java),
        ("perl", Interpreter::Perl),
        ("php", Interpreter::Php),
    ];
    FAMILIES.iter().find_map(|&(prefix, kind)| {
        let version = exe_name.strip_prefix(prefix)?;
        version
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
            .then_some(kind)
    })
}

/// The name of the program an interpreter runs, per the module rules; `None` when
/// `exe_name` is not an interpreter or no program can be found in `args` (argv,
/// `args[0]` included). `cwd` resolves relative script paths for generic stems.
pub fn program_name(exe_name: &str, args: &[String], cwd: Option<&str>) -> Option<String> {
    let args: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let program = match interpreter(exe_name)? {
        Interpreter::Python => python_program(&args)?,
        Interpreter::Java => return java_program(&args),
        Interpreter::Node => generic_program(&args, &NODE)?,
        Interpreter::Ruby => generic_program(&args, &RUBY)?,
        Interpreter::Perl => perl_program(&args)?,
        Interpreter::Php => generic_program(&args, &PHP)?,
    };
    match program {
        Program::Module(name) => Some(name.to_owned()),
        Program::Script(path) => script_name(path, cwd),
    }
}

/// What an interpreter command line runs.
enum Program<'a> {
    /// A file path.
    Script(&'a str),
    /// A name that is already a good service name (`python -m pkg.mod`).
    Module(&'a str),
}

/// `python [-bBdEhiIOPqsSuvVx] [-W arg] [-X opt] [-c cmd | -m mod | file | -] args`
fn python_program<'a>(args: &[&'a str]) -> Option<Program<'a>> {
    let mut it = args.iter().copied();
    while let Some(arg) = it.next() {
        if arg == "--" {
            return it.next().map(Program::Script);
        }
        if arg == "-" {
            return None;
        }
        if let Some(long) = arg.strip_prefix("--") {
            if long == "check-hash-based-pycs" {
                it.next();
            }
            continue;
        }
        let Some(flags) = arg.strip_prefix('-') else {
            return Some(Program::Script(arg));
        };
        // Short flags cluster ("-uB"); the first one taking a value ends the cluster
        // and the value is the rest of it, or the next argument.
        for (i, flag) in flags.char_indices() {
            let rest = &flags[i + flag.len_utf8()..];
            match flag {
                'c' => return None,
                'm' => {
                    let module = if rest.is_empty() { it.next()? } else { rest };
                    return Some(Program::Module(module));
                }
                'W' | 'X' => {
                    if rest.is_empty() {
                        it.next();
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    None
}

/// Option syntax of interpreters without clustered short flags.
struct Spec {
    /// Options whose value is the next argument.
    takes_value: &'static [&'static str],
    /// Options introducing inline code: there is no program file.
    inline_code: &'static [&'static str],
    /// Options whose value is the program file.
    script_option: &'static [&'static str],
}

const NODE: Spec = Spec {
    takes_value: &[
        "-r",
        "--require",
        "--import",
        "--loader",
        "--experimental-loader",
        "-C",
        "--conditions",
        "--title",
        "--env-file",
        "--input-type",
    ],
    inline_code: &["-e", "--eval", "-p", "--print"],
    script_option: &[],
};

const RUBY: Spec = Spec {
    takes_value: &["-I", "-r", "-C", "-E", "--encoding"],
    inline_code: &["-e"],
    script_option: &[],
};

const PHP: Spec = Spec {
    takes_value: &["-c", "-d", "-z", "-t", "-S"],
    inline_code: &["-r", "-B", "-R", "-E", "-F", "-a"],
    script_option: &["-f"],
};

fn generic_program<'a>(args: &[&'a str], spec: &Spec) -> Option<Program<'a>> {
    let mut it = args.iter().copied();
    while let Some(arg) = it.next() {
        if arg == "--" {
            return it.next().map(Program::Script);
        }
        if arg == "-" {
            return None;
        }
        // "--eval=code" and "-ecode" are inline code too.
        let is = |opt: &str| {
            arg == opt
                || arg
                    .strip_prefix(opt)
                    .is_some_and(|rest| opt.starts_with("--") && rest.starts_with('='))
                || (!opt.starts_with("--") && arg.len() > opt.len() && arg.starts_with(opt))
        };
        if spec.inline_code.iter().any(|opt| is(opt)) {
            return None;
        }
        if spec.script_option.contains(&arg) {
            return it.next().map(Program::Script);
        }
        if spec.takes_value.contains(&arg) {
            it.next();
            continue;
        }
        if arg.starts_with('-') {
            continue;
        }
        return Some(Program::Script(arg));
    }
    None
}

/// Perl clusters switches ("-lne"); letters after one that takes an attached value
/// belong to that value ("-MExporter" is not "-E").
fn perl_program<'a>(args: &[&'a str]) -> Option<Program<'a>> {
    let mut it = args.iter().copied();
    while let Some(arg) = it.next() {
        if arg == "--" {
            return it.next().map(Program::Script);
        }
        if arg == "-" {
            return None;
        }
        let Some(flags) = arg.strip_prefix('-') else {
            return Some(Program::Script(arg));
        };
        for flag in flags.chars() {
            match flag {
                'e' | 'E' => return None,
                'I' | 'M' | 'm' | 'i' | 'x' | 'd' | 'D' | 'C' | 'F' => break,
                _ => {}
            }
        }
        if matches!(arg, "-I" | "-M" | "-m") {
            it.next();
        }
    }
    None
}

/// `java [options] (-jar file.jar | -m module[/class] | mainclass | File.java) args`
fn java_program(args: &[&str]) -> Option<String> {
    const TAKES_VALUE: &[&str] = &[
        "-cp",
        "-classpath",
        "--class-path",
        "-p",
        "--module-path",
        "--upgrade-module-path",
        "--add-modules",
        "--add-exports",
        "--add-opens",
        "--add-reads",
        "--patch-module",
        "--limit-modules",
        "--enable-native-access",
        "--source",
    ];
    let mut it = args.iter().copied();
    while let Some(arg) = it.next() {
        match arg {
            "-jar" => {
                return it
                    .next()
                    .map(|jar| strip_version(&file_stem(jar)).to_owned());
            }
            "-m" | "--module" => return it.next().map(module_name),
            _ => {}
        }
        if let Some(module) = arg.strip_prefix("--module=") {
            return Some(module_name(module));
        }
        if TAKES_VALUE.contains(&arg) {
            it.next();
            continue;
        }
        // Options, and @argfiles whose content we do not read.
        if arg.starts_with('-') || arg.starts_with('@') {
            continue;
        }
        if arg.ends_with(".java") {
            return Some(file_stem(arg));
        }
        return Some(arg.to_owned());
    }
    None
}

fn module_name(spec: &str) -> String {
    spec.split('/').next().unwrap_or(spec).to_owned()
}

/// "billing-1.2.3" -> "billing", "svc-0.1-SNAPSHOT" -> "svc": cut at the first
/// "-<digit>" (a version never starts a service name).
fn strip_version(stem: &str) -> &str {
    let cut = stem
        .char_indices()
        .find(|&(i, c)| {
            c == '-' && stem[i + 1..].starts_with(|d: char| d.is_ascii_digit()) && i > 0
        })
        .map(|(i, _)| i);
    cut.map_or(stem, |i| &stem[..i])
}

fn file_stem(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map_or_else(|| path.to_owned(), |s| s.to_string_lossy().into_owned())
}

/// Stems that name an entry-point convention rather than the service.
const GENERIC_STEMS: &[&str] = &["index", "main", "__main__"];
/// Directories that hold code but do not name it.
const GENERIC_DIRS: &[&str] = &["dist", "build", "out", "lib", "src", "bin"];

fn script_name(path: &str, cwd: Option<&str>) -> Option<String> {
    let stem = file_stem(path);
    if stem.is_empty() {
        return None;
    }
    if !GENERIC_STEMS.contains(&stem.as_str()) {
        return Some(stem);
    }
    let mut full = PathBuf::new();
    if let Some(cwd) = cwd.filter(|_| !path.starts_with('/')) {
        full.push(cwd);
    }
    full.push(path);
    let parent_name = full
        .parent()
        .into_iter()
        .flat_map(Path::components)
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
            _ => None,
        })
        .rev()
        .find(|dir| !GENERIC_DIRS.contains(&dir.as_str()));
    Some(parent_name.unwrap_or(stem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(cmdline: &str) -> Option<String> {
        name_in(cmdline, None)
    }

    fn name_in(cmdline: &str, cwd: Option<&str>) -> Option<String> {
        let args: Vec<String> = cmdline.split(' ').map(str::to_owned).collect();
        let exe = args[0].rsplit('/').next().unwrap_or_default().to_owned();
        program_name(&exe, &args, cwd)
    }

    #[test]
    fn interpreter_names() {
        assert_eq!(interpreter("python3"), Some(Interpreter::Python));
        assert_eq!(interpreter("python3.11"), Some(Interpreter::Python));
        assert_eq!(interpreter("python"), Some(Interpreter::Python));
        assert_eq!(interpreter("nodejs"), Some(Interpreter::Node));
        assert_eq!(interpreter("perl5.36.0"), Some(Interpreter::Perl));
        assert_eq!(interpreter("php8.2"), Some(Interpreter::Php));
        assert_eq!(interpreter("php-fpm8.2"), None);
        assert_eq!(interpreter("pythonista"), None);
        assert_eq!(interpreter("nginx"), None);
        assert_eq!(interpreter("javac"), None);
    }

    #[test]
    fn python() {
        assert_eq!(name("python3 app.py").as_deref(), Some("app"));
        assert_eq!(
            name("python3 -u -W ignore /srv/app.py --port 1").as_deref(),
            Some("app")
        );
        assert_eq!(
            name("python3 -m http.server 8000").as_deref(),
            Some("http.server")
        );
        assert_eq!(
            name("python3 -uBm http.server").as_deref(),
            Some("http.server")
        );
        assert_eq!(
            name("python3 -mgunicorn app:app").as_deref(),
            Some("gunicorn")
        );
        assert_eq!(
            name("python3 -X dev -Wdefault worker.py").as_deref(),
            Some("worker")
        );
        assert_eq!(
            name("/usr/bin/python3.11 /usr/local/bin/gunicorn app:app").as_deref(),
            Some("gunicorn")
        );
        assert_eq!(name("python3 -- run.py").as_deref(), Some("run"));
        assert_eq!(name("python3 -c import time; time.sleep(1)"), None);
        assert_eq!(name("python3 -"), None);
        assert_eq!(name("python3"), None);
        assert_eq!(name("python3 -m"), None);
    }

    #[test]
    fn generic_stems_use_directory() {
        assert_eq!(
            name("python3 /srv/billing/main.py").as_deref(),
            Some("billing")
        );
        assert_eq!(
            name("node /srv/checkout/dist/index.js").as_deref(),
            Some("checkout")
        );
        assert_eq!(
            name_in("node index.js", Some("/srv/cart")).as_deref(),
            Some("cart")
        );
        assert_eq!(
            name_in("node /opt/x/index.js", Some("/srv/cart")).as_deref(),
            Some("x")
        );
        assert_eq!(name("node index.js").as_deref(), Some("index"));
        assert_eq!(name("python3 /main.py").as_deref(), Some("main"));
    }

    #[test]
    fn node() {
        assert_eq!(name("node server.js").as_deref(), Some("server"));
        assert_eq!(
            name("node --require ./tracing.js --max-old-space-size=512 server.mjs").as_deref(),
            Some("server")
        );
        assert_eq!(
            name("node --inspect=0.0.0.0:9229 -r dotenv/config api.js").as_deref(),
            Some("api")
        );
        assert_eq!(name("node -e console.log(1)"), None);
        assert_eq!(name("node --eval=1"), None);
        assert_eq!(name("node -p 1"), None);
        assert_eq!(name("node"), None);
    }

    #[test]
    fn ruby_perl_php() {
        assert_eq!(
            name("ruby -I lib -rbundler/setup bin/rails server").as_deref(),
            Some("rails")
        );
        assert_eq!(name("ruby -e puts"), None);
        assert_eq!(
            name("perl -w -I lib /opt/bin/mailer.pl").as_deref(),
            Some("mailer")
        );
        assert_eq!(name("perl -MExporter tool.pl").as_deref(), Some("tool"));
        assert_eq!(name("perl -lne print"), None);
        assert_eq!(
            name("php -d memory_limit=1G artisan serve").as_deref(),
            Some("artisan")
        );
        assert_eq!(name("php -f /var/www/cron.php").as_deref(), Some("cron"));
        assert_eq!(name("php -r echo"), None);
        assert_eq!(name("php -S 0.0.0.0:8000 -t public"), None);
    }

    #[test]
    fn java() {
        assert_eq!(
            name("java -Xmx1g -Dx=y -jar /app/billing-1.2.3.jar --server.port=1").as_deref(),
            Some("billing")
        );
        assert_eq!(
            name("java -jar checkout-service-0.0.1-SNAPSHOT.jar").as_deref(),
            Some("checkout-service")
        );
        assert_eq!(name("java -jar app.jar").as_deref(), Some("app"));
        assert_eq!(
            name("java -cp lib/*:. -XX:+UseG1GC com.acme.Main arg").as_deref(),
            Some("com.acme.Main")
        );
        assert_eq!(
            name("java -m com.acme/com.acme.Main").as_deref(),
            Some("com.acme")
        );
        assert_eq!(name("java --module=com.acme").as_deref(), Some("com.acme"));
        assert_eq!(name("java @opts Hello.java").as_deref(), Some("Hello"));
        assert_eq!(name("java -version"), None);
    }

    #[test]
    fn not_an_interpreter() {
        assert_eq!(name("nginx -g daemon off;"), None);
    }

    #[test]
    fn version_stripping() {
        assert_eq!(strip_version("billing-1.2.3"), "billing");
        assert_eq!(strip_version("a-b-c"), "a-b-c");
        assert_eq!(strip_version("-1"), "-1");
        assert_eq!(strip_version("log4j2-app"), "log4j2-app");
    }
}
