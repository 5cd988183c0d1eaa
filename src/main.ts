#!/usr/bin/env node
/**
 * Process wiring: command line, configuration, servers, signals, reloads.
 */
import cluster from 'node:cluster';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Config, LoadOptions } from './config/load.js';
import type { Logger } from './observability/logger.js';
import { VERSION } from './version.js';

/**
 * The modules a command needs, imported only by the command that runs them:
 * --version and --help load none of them (gRPC, prom-client, undici...).
 */
const loadConfigModule = () => import('./config/load.js');
async function loadServiceModules() {
  const [app, primary, supervisor, config, watch, logger] = await Promise.all([
    import('./app.js'),
    import('./cluster/primary.js'),
    import('./cluster/supervisor.js'),
    loadConfigModule(),
    import('./config/watch.js'),
    import('./observability/logger.js'),
  ]);
  return { ...app, ...primary, ...supervisor, ...config, ...watch, ...logger };
}
type ConfigModule = Awaited<ReturnType<typeof loadConfigModule>>;
type ServiceModules = Awaited<ReturnType<typeof loadServiceModules>>;

const USAGE = `Usage:
  introspection-authz [--config FILE]      run the service
  introspection-authz check-config FILE    validate FILE, print it resolved (secrets masked)

Envoy ext_authz (gRPC v3) service that authorizes bearer tokens by RFC 7662 introspection.

Options:
  -c, --config FILE   configuration file (YAML); default: $CONFIG_FILE
  -v, --version       print the version and exit
  -h, --help          print this help and exit
  --skip-secrets      check-config only: read no secret file and no variable
                      (*File, *Env) and check everything else, e.g. in CI

The configuration is reloaded on SIGHUP, when the file changes, and when a
secret, certificate or key file it names changes. With
server.workers (WORKERS) above 1, this process supervises that many workers.
Exit codes: 0 stopped by SIGTERM/SIGINT (or check-config passed), 1 runtime failure,
2 configuration error (including a port that is already in use).`;

const EXIT_RUNTIME = 1;
const EXIT_CONFIG = 2;

async function main(argv: string[]): Promise<void> {
  // A cluster worker gets its configuration from the primary, not from the command line.
  if (cluster.isWorker) {
    (await import('./cluster/worker.js')).runWorker();
    return;
  }
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        version: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
        'skip-secrets': { type: 'boolean' },
      },
      strict: true,
      allowPositionals: true,
    });
  } catch (error) {
    fail(`${(error as Error).message}\n${USAGE}`, EXIT_CONFIG);
  }
  if (args.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (args.values.version) {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  const [command, ...rest] = args.positionals;
  if (command === 'check-config') {
    if (rest.length > 1) fail(`check-config takes one file\n${USAGE}`, EXIT_CONFIG);
    checkConfig(await loadConfigModule(), rest[0] ?? args.values.config ?? process.env.CONFIG_FILE, {
      skipSecrets: args.values['skip-secrets'] ?? false,
    });
    return;
  }
  if (args.values['skip-secrets']) fail(`--skip-secrets is an option of check-config\n${USAGE}`, EXIT_CONFIG);
  if (command !== undefined) fail(`unknown command "${command}"\n${USAGE}`, EXIT_CONFIG);
  await serve(args.values.config ?? process.env.CONFIG_FILE);
}

function fail(message: string, code: number): never {
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}

/** The file's text, the configuration it gives, and the loader's warnings. */
function load(
  m: ConfigModule,
  path: string | undefined,
  options: LoadOptions = {},
): { config: Config; text: string; warnings: string[] } {
  if (!path) fail('no configuration file: give --config FILE or set CONFIG_FILE', EXIT_CONFIG);
  try {
    const text = m.readConfigFile(path);
    const warnings: string[] = [];
    return { config: m.parseConfig(text, path, { ...options, warn: (message) => warnings.push(message) }), text, warnings };
  } catch (error) {
    if (error instanceof m.ConfigError) fail(error.message, EXIT_CONFIG);
    throw error;
  }
}

/** Print the configuration as the service sees it: defaults filled in, secrets masked. */
function checkConfig(m: ConfigModule, path: string | undefined, options: LoadOptions): void {
  const { config, warnings } = load(m, path, options);
  // stdout stays the JSON alone; a warning never changes the exit code.
  for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
  process.stdout.write(`${JSON.stringify(config, printable, 2)}\n`);
}

/** JSON replacer: compiled templates print as their source; Secret prints itself as [redacted]. */
function printable(_key: string, value: unknown): unknown {
  if (value && typeof value === 'object' && 'source' in value && 'parts' in value) return (value as { source: unknown }).source;
  return value;
}

function digest(path: string): string | null {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return null;
  }
}

/**
 * What serve() runs: the whole service in this process (App), or the primary
 * of a cluster of workers (Cluster). Both reload and stop the same way.
 */
interface Running {
  readonly config: Config;
  readonly grpc: { readonly port: number };
  readonly http?: { readonly port: number } | null;
  readonly ops: { readonly port: number };
  readonly admin: { readonly port: number } | null;
  readonly metrics: {
    readonly configReloads: { inc(labels: { result: string }): void };
    readonly secretReloads: { inc(labels: { result: string }): void };
  };
  /** Set when the service cannot go on (workers keep dying). */
  readonly gaveUp?: Promise<Error>;
  /** Put a validated configuration in force; a ConfigError when it cannot be (nothing changed then). */
  reload(config: Config, text: string): string[] | Promise<string[]>;
  stop(): Promise<void>;
}

function start(m: ServiceModules, config: Config, text: string, path: string, logger: Logger): Promise<Running> {
  if (config.server.workers > 1) return m.startCluster(config, text, path, logger);
  const grpcLogs = m.routeGrpcLogs(logger);
  return m.startApp(config, logger).then((app) => {
    grpcLogs.listening();
    return app;
  });
}

async function serve(path: string | undefined): Promise<void> {
  // SIGHUP's default action ends the process, so it is taken before anything
  // else; one that arrives before the service is up is acted on once it is.
  let hangupPending = false;
  let reload: (trigger: string, files?: string[]) => void = () => {
    hangupPending = true;
  };
  process.on('SIGHUP', () => reload('SIGHUP'));
  // Taken before the file is read: a change made while loading or starting up
  // then differs from it, and is reloaded once the file is watched.
  const initialDigest = path ? digest(path) : null;
  const m = await loadServiceModules();
  const { config, text, warnings } = load(m, path);
  const configPath = path!;
  const logger = m.createLogger(config.log.level);
  for (const warning of warnings) logger.warn({ warning }, 'risky configuration');

  // Signals are taken from here on: one arriving during start-up stops the service once it is up.
  let app: Running | undefined;
  let signalled = false;
  let unwatch = () => {};
  let unwatchFiles = () => {};
  const stop = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ signal }, 'second signal: exiting at once');
      logger.flush();
      process.exit(EXIT_RUNTIME);
    }
    signalled = true;
    if (app) drain(app, signal);
  };
  const drain = (running: Running, signal: NodeJS.Signals | 'workers', code = 0) => {
    unwatch();
    unwatchFiles();
    logger.info({ signal, timeoutMs: running.config.server.shutdownTimeout }, 'draining');
    running
      .stop()
      .then(() => {
        logger.info('stopped');
        logger.flush(() => process.exit(code));
      })
      .catch((error: unknown) => {
        logger.error({ err: (error as Error).message }, 'shutdown failed');
        logger.flush(() => process.exit(EXIT_RUNTIME));
      });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  try {
    app = await start(m, config, text, configPath, logger);
  } catch (error) {
    const listen = error instanceof m.ListenError;
    const worker = error instanceof m.StartError;
    process.stderr.write(`error: ${listen || worker ? error.message : `cannot start: ${(error as Error).message}`}\n`);
    logger.flush(() => process.exit(worker ? error.exitCode : listen && error.inUse ? EXIT_CONFIG : EXIT_RUNTIME));
    return;
  }
  logger.info(
    {
      version: VERSION,
      grpcPort: app.grpc.port,
      ...(app.http ? { httpPort: app.http.port } : {}),
      opsPort: app.ops.port,
      ...(app.admin ? { adminPort: app.admin.port } : {}),
      ...(config.server.workers > 1 ? { workers: config.server.workers } : {}),
      policies: config.policies.map((p) => p.name),
    },
    'serving',
  );
  if (signalled) {
    drain(app, 'SIGTERM');
    return;
  }

  const running = app;
  running.gaveUp?.then(() => {
    if (signalled) return;
    signalled = true;
    drain(running, 'workers', EXIT_RUNTIME);
  });
  let loaded = initialDigest;
  // One reload at a time: a cluster's takes a round trip to every worker.
  let reloading = Promise.resolve();
  // The files the configuration in force reads (secrets, certificates): watched again after each reload, which may name others.
  let watchedFiles = '';
  const watchReferencedFiles = () => {
    const files = running.config.files;
    const names = JSON.stringify(files);
    if (names === watchedFiles) return;
    watchedFiles = names;
    unwatchFiles();
    unwatchFiles = m.watchFiles(files, (keys) => reload('secret', keys));
  };
  reload = (trigger: string, files?: string[]) => {
    reloading = reloading.then(async () => {
      if (signalled) return;
      const current = digest(configPath);
      if (trigger === 'file' && current === loaded) return;
      loaded = current;
      await reloadFrom(m, running, configPath, trigger, logger, files);
      watchReferencedFiles();
    }).catch((error: unknown) => {
      // A reload that failed in a way reloadFrom did not foresee must neither end the process nor stop later reloads.
      logger.error({ trigger, err: (error as Error).message }, 'reload failed');
    });
  };
  unwatch = m.watchConfigFile(configPath, () => reload('file'));
  watchReferencedFiles();
  // Nothing watched the file until now: catch up on a SIGHUP or a change since it was read.
  reload(hangupPending ? 'SIGHUP' : 'file');
}

/** Validate the file in full, then swap; an invalid file changes nothing. */
/** @param files with trigger `secret`: the keys of the files that changed (never their content) */
async function reloadFrom(m: ConfigModule, app: Running, path: string, trigger: string, logger: Logger, files?: string[]): Promise<void> {
  let restartNeeded: string[];
  let next: Config;
  const warnings: string[] = [];
  try {
    const text = m.readConfigFile(path);
    next = m.parseConfig(text, path, { warn: (message) => warnings.push(message) });
    restartNeeded = await app.reload(next, text);
  } catch (error) {
    app.metrics.configReloads.inc({ result: 'failure' });
    if (trigger === 'secret') app.metrics.secretReloads.inc({ result: 'failure' });
    const message = error instanceof m.ConfigError ? error.message : `${(error as Error).name}: ${(error as Error).message}`;
    logger.error({ trigger, files, err: message }, 'configuration rejected; the previous one stays in force');
    return;
  }
  app.metrics.configReloads.inc({ result: 'success' });
  if (trigger === 'secret') app.metrics.secretReloads.inc({ result: 'success' });
  logger.info({ trigger, files, policies: next.policies.map((p) => p.name) }, 'configuration reloaded');
  for (const warning of warnings) logger.warn({ trigger, warning }, 'risky configuration');
  if (restartNeeded.length > 0) {
    logger.warn({ keys: restartNeeded }, 'these settings take effect only after a restart');
  }
}

process.on('uncaughtException', (error) => {
  process.stderr.write(`fatal: ${error.name}: ${error.message}\n`);
  process.exit(EXIT_RUNTIME);
});

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`fatal: ${(error as Error).message}\n`);
  process.exit(EXIT_RUNTIME);
});
