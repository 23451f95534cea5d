//! `isles [--dir PATH] COMMAND`: look at and manage the isles of this host
//! (see the `hermit_isles` crate docs for the directory they live in).

use std::io::Write as _;
use std::process::ExitCode;

use hermit_isles::{Error, IsleDir, IsleState, human};

const USAGE: &str = "\
Usage: isles [--dir PATH] COMMAND

Multi-kernel isles of this host (started with HERMIT_ISLE=N proxy IMAGE or
uhyve --isle N IMAGE).

Commands:
  status        each isle that ran since the last clean: running (pid) or
                stopped, and the shared region's size
  log N         print isle N's kernel log (also while it runs)
  stop N        send SIGTERM to the process running isle N
  stop --all    the same for every running isle
  clean         remove the isle directory (refused while an isle runs)
  mmnif [--name NAME]
                the Linux end of mmnif (needs root): a tap device NAME
                (default mmnif) at 192.168.28.1/24 bridged to the isles'
                rings, so isle N is reachable at 192.168.28.N+2; runs until
                SIGINT or SIGTERM

Options:
  --dir PATH    the isle directory (default $HERMIT_ISLE_DIR, or
                /dev/shm/hermit-isles-<uid>)
  -h, --help    show this help
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Help,
    Status,
    Log(u32),
    Stop(u32),
    StopAll,
    Clean,
    Mmnif(String),
}

fn parse_index(text: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not an isle number (try --help)"))
}

fn parse(args: &[String]) -> Result<(Option<String>, Command), String> {
    let mut dir = None;
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok((dir, Command::Help)),
            "--dir" => {
                dir = Some(args.next().ok_or("--dir needs a value")?.clone());
            }
            a if a.starts_with("--dir=") => dir = Some(a["--dir=".len()..].to_owned()),
            _ => rest.push(arg.as_str()),
        }
    }
    let command = match rest.as_slice() {
        ["status"] => Command::Status,
        ["log", n] => Command::Log(parse_index(n)?),
        ["stop", "--all"] => Command::StopAll,
        ["stop", n] => Command::Stop(parse_index(n)?),
        ["clean"] => Command::Clean,
        ["mmnif"] => Command::Mmnif(hermit_isles::bridge::DEFAULT_NAME.to_owned()),
        ["mmnif", "--name", name] => Command::Mmnif((*name).to_owned()),
        ["mmnif", name] if name.starts_with("--name=") => {
            Command::Mmnif(name["--name=".len()..].to_owned())
        }
        [] => return Err("missing COMMAND (try --help)".into()),
        [cmd, ..] if ["status", "log", "stop", "clean", "mmnif"].contains(cmd) => {
            return Err(format!("wrong arguments for '{cmd}' (try --help)"));
        }
        [cmd, ..] => return Err(format!("unknown command '{cmd}' (try --help)")),
    };
    if dir.as_deref() == Some("") {
        return Err("--dir needs a non-empty path".into());
    }
    if command == Command::Mmnif(String::new()) {
        return Err("--name needs a non-empty interface name".into());
    }
    Ok((dir, command))
}

/// `isles mmnif`: bridges until a signal, then prints what moved.
fn mmnif(dir: &IsleDir, name: &str) -> Result<(), hermit_isles::bridge::BridgeError> {
    use hermit_isles::bridge;
    let stop = bridge::stop_on_signals()?;
    let stats = bridge::run(dir, name, stop, |tap| {
        println!(
            "isles mmnif: {tap} is {} ({}), bridged to the isles in {}",
            bridge::host_cidr(),
            bridge::host_mac_text(),
            dir.path().display()
        );
        let _ = std::io::stdout().flush();
    })?;
    println!(
        "isles mmnif: stopped; {} frames to the isles, {} to Linux, {} dropped",
        stats.to_isles, stats.to_linux, stats.dropped
    );
    Ok(())
}

fn run(dir: &IsleDir, command: Command) -> Result<(), Error> {
    match command {
        Command::Help => print!("{USAGE}"),
        Command::Status => {
            println!("directory: {}", dir.path().display());
            match dir.region_len() {
                Some(len) => println!("region: {}", human(len)),
                None => println!("region: none"),
            }
            let isles = dir.status()?;
            if isles.is_empty() {
                println!("no isles");
            }
            for isle in isles {
                match isle.state {
                    IsleState::Running { pid: Some(pid) } => {
                        println!("isle {}: running (pid {pid})", isle.index);
                    }
                    IsleState::Running { pid: None } => {
                        println!("isle {}: running (pid unknown)", isle.index);
                    }
                    IsleState::Stopped => println!("isle {}: stopped", isle.index),
                }
            }
            if let IsleState::Running { pid } = dir.host_state()? {
                let pid = pid.map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"));
                println!("host: mmnif bridge running ({pid})");
            }
        }
        Command::Log(n) => {
            if n >= hermit_isles::MAX_ISLES {
                return Err(Error::BadIndex(n));
            }
            let path = dir.log_path(n);
            let bytes = std::fs::read(&path).map_err(|source| Error::Io {
                what: "read",
                path,
                source,
            })?;
            let _ = std::io::stdout().lock().write_all(&bytes);
        }
        Command::Stop(n) => {
            let pid = dir.stop(n)?;
            println!("isle {n}: sent SIGTERM to pid {pid}");
        }
        Command::StopAll => {
            let mut any = false;
            for isle in dir.status()? {
                if let IsleState::Running { .. } = isle.state {
                    // An isle may end between status and stop: not an error.
                    match dir.stop(isle.index) {
                        Ok(pid) => println!("isle {}: sent SIGTERM to pid {pid}", isle.index),
                        Err(Error::NotRunning(_)) => {}
                        Err(e) => return Err(e),
                    }
                    any = true;
                }
            }
            if !any {
                println!("no isle is running");
            }
        }
        Command::Mmnif(_) => unreachable!("handled by main"),
        Command::Clean => {
            if dir.clean()? {
                println!("removed {}", dir.path().display());
            } else {
                println!("nothing to remove at {}", dir.path().display());
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = match std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect::<Result<_, _>>()
    {
        Ok(args) => args,
        Err(a) => {
            eprintln!("isles: argument {a:?} is not valid UTF-8");
            return ExitCode::from(2);
        }
    };
    let (dir, command) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("isles: {message}");
            return ExitCode::from(2);
        }
    };
    let dir = dir.map_or_else(IsleDir::from_env, IsleDir::new);
    if let Command::Mmnif(name) = &command {
        return match mmnif(&dir, name) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("isles: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&dir, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("isles: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<(Option<String>, Command), String> {
        parse(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn commands_parse() {
        assert_eq!(p(&["status"]), Ok((None, Command::Status)));
        assert_eq!(
            p(&["--dir", "/x", "log", "3"]),
            Ok((Some("/x".into()), Command::Log(3)))
        );
        assert_eq!(
            p(&["stop", "2", "--dir=/y"]),
            Ok((Some("/y".into()), Command::Stop(2)))
        );
        assert_eq!(p(&["stop", "--all"]), Ok((None, Command::StopAll)));
        assert_eq!(p(&["clean"]), Ok((None, Command::Clean)));
        assert_eq!(p(&["status", "--help"]), Ok((None, Command::Help)));
        assert_eq!(p(&["mmnif"]), Ok((None, Command::Mmnif("mmnif".into()))));
        assert_eq!(
            p(&["mmnif", "--name", "mm0", "--dir", "/d"]),
            Ok((Some("/d".into()), Command::Mmnif("mm0".into())))
        );
        assert_eq!(
            p(&["mmnif", "--name=mm1"]),
            Ok((None, Command::Mmnif("mm1".into())))
        );
    }

    #[test]
    fn bad_input_is_one_line() {
        for (args, needle) in [
            (&[][..], "missing COMMAND"),
            (&["launch"], "unknown command 'launch'"),
            (&["log"], "wrong arguments for 'log'"),
            (&["stop", "x"], "'x' is not an isle number"),
            (&["stop", "-1"], "'-1' is not an isle number"),
            (&["status", "extra"], "wrong arguments"),
            (&["--dir"], "--dir needs a value"),
            (&["--dir=", "status"], "non-empty"),
            (&["mmnif", "--name"], "wrong arguments for 'mmnif'"),
            (&["mmnif", "--name="], "non-empty interface name"),
        ] {
            let err = p(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
            assert!(!err.contains('\n'));
        }
    }
}
