//! `build`: arguments → a context and a Dockerfile → the builder; its events printed as
//! docker's classic builder prints them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;
use strata_build::{BuildOptions, Builder, Context, Event};
use strata_engine::Engine;
use strata_image::Reference;

use super::CliError;

#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short, long = "tag")]
    pub tag: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile")
    #[arg(short, long = "file")]
    pub file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    pub build_arg: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the image (no registry is reached: accepted)
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pull: bool,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    /// Set metadata for an image
    #[arg(long)]
    pub label: Vec<String>,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Remove intermediate containers after a successful build
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub rm: bool,
    /// Always remove intermediate containers
    #[arg(long)]
    pub force_rm: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long)]
    pub network: Option<String>,
    /// Build context: a directory, or `-` (a Dockerfile or a tar archive on stdin)
    pub context: String,
}

static CANCELLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    CANCELLED.store(true, Ordering::SeqCst);
}

/// ctrl-c ends the build cleanly: the running step's container is killed and removed
/// and nothing is tagged. (A SIGKILL leaves that to the next command's sweep.)
fn catch_interrupts() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_interrupt as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaction(s, &sa, std::ptr::null_mut());
        }
    }
}

fn usage(msg: String) -> CliError {
    CliError { code: Some(125), ..CliError::usage(msg) }
}

pub fn build(engine: &Engine, a: BuildArgs) -> Result<u8, CliError> {
    let mut tags = Vec::new();
    for t in &a.tag {
        let r = Reference::parse(t).map_err(|_| usage(format!("invalid argument \"{t}\" for \"-t, --tag\" flag: invalid reference format")))?;
        if r.digest().is_some() {
            return Err(usage(format!("invalid argument \"{t}\" for \"-t, --tag\" flag: invalid reference format")));
        }
        tags.push(r.with_default_tag());
    }
    let mut build_args = BTreeMap::new();
    for b in &a.build_arg {
        match b.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), Some(v.to_string())),
            None => build_args.insert(b.clone(), std::env::var(b).ok()),
        };
    }
    let mut labels = BTreeMap::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }

    // The context and the Dockerfile.
    let lease = engine.store().lease()?;
    let (ctx, dockerfile) = if a.context == "-" {
        if a.file.as_deref() == Some("-") {
            return Err(usage("invalid argument: can't use stdin for both build context and dockerfile".into()));
        }
        let mut input = Vec::new();
        std::io::stdin().read_to_end(&mut input).map_err(|e| CliError::usage(format!("read stdin: {e}")))?;
        if strata_build::context::looks_like_archive(&input) {
            let dir = lease.tmp_dir()?;
            let ctx = Context::tar(&input[..], &dir).map_err(CliError::from)?;
            let name = a.file.clone().unwrap_or_else(|| "Dockerfile".into());
            let df = ctx
                .read_file(&name)
                .or_else(|| if a.file.is_none() { ctx.read_file("dockerfile") } else { None })
                .ok_or_else(|| CliError::usage(format!("Cannot locate specified Dockerfile: {name}")).engine())?;
            (ctx, df)
        } else {
            (Context::none(), input)
        }
    } else {
        let dir = Path::new(&a.context);
        if !dir.exists() {
            return Err(CliError::usage(format!("unable to prepare context: path {:?} not found", a.context)));
        }
        let ctx = Context::dir(dir).map_err(|e| CliError::usage(e.to_string()))?;
        let df = match a.file.as_deref() {
            Some("-") => {
                let mut input = Vec::new();
                std::io::stdin().read_to_end(&mut input).map_err(|e| CliError::usage(format!("read stdin: {e}")))?;
                input
            }
            Some(f) => std::fs::read(f).map_err(|e| {
                let abs = std::path::absolute(f).unwrap_or_else(|_| PathBuf::from(f));
                CliError::usage(format!("unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {}: {}", abs.display(), strata_store::os_text(&e)))
            })?,
            None => std::fs::read(dir.join("Dockerfile")).or_else(|_| std::fs::read(dir.join("dockerfile"))).map_err(|e| {
                let abs = std::path::absolute(dir.join("Dockerfile")).unwrap_or_else(|_| dir.join("Dockerfile"));
                CliError::usage(format!("unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {}: {}", abs.display(), strata_store::os_text(&e)))
            })?,
        };
        (ctx, df)
    };
    let dockerfile = String::from_utf8_lossy(&dockerfile).into_owned();

    catch_interrupts();
    let builder = Builder::new(engine)?;
    let opts = BuildOptions { tags: tags.clone(), build_args, target: a.target.clone(), no_cache: a.no_cache, labels, remove: a.rm, force_rm: a.force_rm };
    let quiet = a.quiet;
    let mut buffered = String::new();
    let stdout = std::io::stdout();
    let mut printer = |ev: Event| match ev {
        Event::Stream(s) if quiet => buffered.push_str(&s),
        Event::Stream(s) => {
            let mut o = stdout.lock();
            let _ = o.write_all(s.as_bytes());
            let _ = o.flush();
        }
        Event::Aux(_) => {}
    };
    let res = builder.build(&ctx, &dockerfile, &opts, &mut printer, &|| CANCELLED.load(Ordering::SeqCst));
    drop(ctx);
    let built = match res {
        Ok(b) => b,
        Err(e) => {
            if quiet {
                eprint!("{buffered}");
            }
            if matches!(e, strata_build::BuildError::Cancelled) {
                return Ok(130);
            }
            let code = e.exit_code();
            let before = e.before_output();
            let mut ce = CliError::usage(e.to_string());
            if before {
                ce = ce.engine();
            }
            ce.code = Some(code.clamp(1, 255) as u8);
            return Err(ce);
        }
    };
    for t in &tags {
        engine.images().tag(&built.id, t)?;
    }
    if quiet {
        println!("{}", built.id);
    } else {
        println!("Successfully built {}", &built.id.hex()[..12]);
        for t in &tags {
            println!("Successfully tagged {}", t.familiar());
        }
    }
    if let Some(f) = &a.iidfile {
        std::fs::write(f, built.id.to_string()).map_err(|e| CliError::usage(format!("failed to write image ID to {}: {e}", f.display())))?;
    }
    Ok(0)
}
