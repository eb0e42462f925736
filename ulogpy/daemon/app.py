"""Start-up, main loop and shutdown of the daemon."""

from __future__ import annotations

import logging
import signal
import sys

from ulogpy import __version__, fastpath
from ulogpy.config.errors import ConfigError
from ulogpy.core.plugin import InputPlugin, Plugin, PluginError
from ulogpy.core.stack import Pipeline, load_pipeline
from ulogpy.daemon import metrics
from ulogpy.daemon.loop import Loop
from ulogpy.daemon.notify import Notifier, Service, status_line
from ulogpy.daemon.ownlog import NOTICE, flush_log, python_level, reopen_logfile, setup_logging
from ulogpy.daemon.preflight import report_problems
from ulogpy.daemon.process import DaemonError, Daemonizer, PidFile, drop_privileges, lookup_user
from ulogpy.daemon.runner import PeriodicReport, Runner, report_counters

log = logging.getLogger("ulogpy")


def _fail(message: str) -> int:
    sys.stderr.write(f"ulogpy: {message}\n")
    return 1


def run(opts) -> int:
    user = None
    try:
        if opts.user:
            user = lookup_user(opts.user)
        config, pipeline = load_pipeline(opts.config)
    except (ConfigError, DaemonError) as exc:
        return _fail(str(exc))
    if opts.check:
        sys.stdout.write(
            f"{config.path}: OK, {len(pipeline.stacks)} stack(s), "
            f"{len(pipeline.instances())} plugin instance(s)\n"
        )
        return report_problems(config, pipeline, user)
    gopts = config.global_options
    level = opts.loglevel if opts.loglevel else gopts.loglevel
    try:
        setup_logging(gopts.logfile, python_level(level), opts.verbose, opts.daemon)
    except OSError as exc:
        return _fail(f"can't open logfile '{gopts.logfile}': {exc.strerror}")

    pidfile = PidFile(opts.pidfile) if opts.pidfile else None
    daemonizer = Daemonizer()
    try:
        if pidfile:
            pidfile.acquire()
        if opts.daemon:
            daemonizer.detach()
            if pidfile:
                pidfile.write()
    except DaemonError as exc:
        return _fail(str(exc))

    log.info("ulogpy Version %s starting with %s", __version__, config.path)
    # Once, at start: which per-event path runs (NOTICE when it is the slower one).
    log.log(logging.INFO if fastpath.compiled is not None else NOTICE, "%s", fastpath.status())
    loop = Loop()
    started: list[Plugin] = []
    inst: Plugin | None = None
    metrics_server = None
    try:
        runner = Runner(pipeline, loop)
        for inst in _start_order(pipeline):
            inst.start(loop)
            started.append(inst)
            runner.open(inst)
        inst = None
        runner.start(interrupted=loop.has_pending_signals)
        metrics_server = metrics.start(_metrics_listen(opts, config), pipeline, runner)
        if user:
            drop_privileges(user)
            log.log(NOTICE, "running as user %s", user.pw_name)
    except (PluginError, DaemonError, OSError) as exc:
        inst_name = f"{inst}: " if inst is not None and not isinstance(exc, DaemonError) else ""
        message = f"error starting {inst_name}{exc}"
        log.critical(message)
        if metrics_server:
            metrics_server.stop()
        _stop_all(started)
        if pidfile:
            pidfile.release()
        daemonizer.report(False, f"ulogpy: {message}\n")
        flush_log()
        return _fail(message)

    daemonizer.report(True)
    _install_signals(loop, pipeline, runner)
    loop.after_batch = runner.after_batch
    if config.global_options.stats_interval:
        loop.call_every(config.global_options.stats_interval, PeriodicReport(pipeline))
    log.log(NOTICE, "initialization finished, entering main loop")
    service = Service(Notifier(), lambda: status_line(pipeline, runner))
    service.ready(loop, daemonized=opts.daemon)
    try:
        loop.run()
    finally:
        service.stopping()
        if metrics_server:
            metrics_server.stop()
        _catch_up(pipeline.inputs, runner)
        stalled = runner.shutdown()
        _stop_all([inst for inst in started if inst not in stalled])
        report_counters(pipeline, NOTICE)
        loop.close()
        if pidfile:
            pidfile.release()
        log.log(NOTICE, "exiting")
        flush_log()
    return 0


def _metrics_listen(opts, config) -> str:
    """--metrics-listen if given, else [global] metrics_listen ("" = no metrics)."""
    given = getattr(opts, "metrics_listen", None)
    return config.global_options.metrics_listen if given is None else given


def _start_order(pipeline: Pipeline) -> list[Plugin]:
    """Outputs and filters first, inputs last: no event arrives before its output is open."""
    everything = pipeline.instances()
    return [i for i in everything if i not in pipeline.inputs] + list(pipeline.inputs)


def _catch_up(inputs: list[InputPlugin], runner: Runner) -> None:
    """Before the outputs drain: the datagrams the inputs read ahead, decoded and handed
    over (they are in this process's memory, not in the kernel: stopping must not lose
    them)."""
    for inp in inputs:
        try:
            inp.catch_up()
        except Exception as exc:
            log.error("%s: decoding what was read before stopping failed: %s", inp, exc)
    runner.after_batch()


def _stop_all(instances: list[Plugin]) -> None:
    for inst in reversed(instances):
        try:
            inst.stop()
        except Exception as exc:
            log.error("%s: stop failed: %s", inst, exc)


def _install_signals(loop: Loop, pipeline: Pipeline, runner: Runner) -> None:
    instances = pipeline.instances()

    def terminate(signum: int) -> None:
        log.log(NOTICE, "Terminal signal received, exiting")
        loop.stop()

    def deliver(signum: int) -> None:
        log.log(NOTICE, "signal %s received, calling pluginstances", signal.Signals(signum).name)
        if signum == signal.SIGHUP:
            reopen_logfile()
        if signum == signal.SIGUSR1:
            report_counters(pipeline, NOTICE)
        for inst in instances:
            try:
                runner.deliver(inst, signum)
            except Exception as exc:
                log.error("%s: signal handling failed: %s", inst, exc)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, terminate)
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
        loop.add_signal_handler(sig, deliver)
