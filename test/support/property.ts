/**
 * The one way tests run a fast-check property, so that a red run can be
 * replayed. Each run uses FC_SEED when set, else a fresh random seed; on a
 * failure the error starts with the command line that replays it (seed, and
 * fast-check's shrink path to go straight to the smallest counterexample).
 *
 *   FC_SEED=<n>        seed for every property of the file
 *   FC_PATH=<a:b:..>   replay one shrunk counterexample (with its FC_SEED); it applies to every
 *                      property of the file, so read only the one that failed
 *   FC_NUM_RUNS=<n>    run count for every property of the file, instead of each test's own
 */
import { relative } from 'node:path';
import fc from 'fast-check';

type Env = Readonly<Record<string, string | undefined>>;

export interface PropertyRun {
  readonly seed: number;
  readonly numRuns: number;
  readonly path?: string;
}

/** The seed, run count and replay path of one property run; `numRuns` applies unless FC_NUM_RUNS overrides it. */
export function propertyRun(numRuns: number, env: Env = process.env): PropertyRun {
  const seed = integerFrom(env, 'FC_SEED') ?? (Math.random() * 2 ** 32) | 0;
  const runs = integerFrom(env, 'FC_NUM_RUNS') ?? numRuns;
  if (runs < 1) throw new TypeError('FC_NUM_RUNS: must be a positive integer');
  const path = env.FC_PATH?.trim();
  if (path !== undefined && path !== '' && !/^\d+(:\d+)*$/.test(path)) throw new TypeError('FC_PATH: must look like 12:0:3, as fast-check prints it');
  return path ? { seed, numRuns: runs, path } : { seed, numRuns: runs };
}

/** The shell line that replays a failure of `run`, for the test file being run. */
export function replayLine(run: PropertyRun, failurePath: string | undefined): string {
  const file = process.argv[1] ? relative(process.cwd(), process.argv[1]) : '<test file>';
  const path = failurePath ? ` FC_PATH=${failurePath}` : '';
  return `replay: FC_SEED=${run.seed}${path} FC_NUM_RUNS=${run.numRuns} node node_modules/tap/dist/esm/run.mjs --disable-coverage ${file}`;
}

/**
 * fc.assert with the seed, run count and replay path of `propertyRun`; a
 * failure is rethrown with the replay line first. `extra` passes other
 * fast-check parameters and wins over the environment (a regression case
 * pins its `seed`).
 */
export function assertProperty<Ts>(property: fc.IProperty<Ts>, numRuns: number, extra?: fc.Parameters<Ts>): void;
export function assertProperty<Ts>(property: fc.IAsyncProperty<Ts>, numRuns: number, extra?: fc.Parameters<Ts>): Promise<void>;
export function assertProperty<Ts>(
  property: fc.IProperty<Ts> | fc.IAsyncProperty<Ts>,
  numRuns: number,
  extra: fc.Parameters<Ts> = {},
): void | Promise<void> {
  const fromEnv = propertyRun(numRuns);
  const parameters: fc.Parameters<Ts> = { ...fromEnv, ...extra };
  const run: PropertyRun = { seed: parameters.seed ?? fromEnv.seed, numRuns: parameters.numRuns ?? fromEnv.numRuns };
  if (property.isAsync()) {
    return (fc.assert(property as fc.IAsyncProperty<Ts>, parameters) as Promise<void>).catch((error: unknown) => {
      throw withReplay(error, run);
    });
  }
  try {
    fc.assert(property as fc.IProperty<Ts>, parameters);
  } catch (error) {
    throw withReplay(error, run);
  }
}

function withReplay(error: unknown, run: PropertyRun): Error {
  const message = error instanceof Error ? error.message : String(error);
  // fast-check's report says `{ seed: n, path: "a:b:c", endOnFailure: true }`.
  const failurePath = /path: "([\d:]+)"/.exec(message)?.[1];
  return new Error(`${replayLine(run, failurePath)}\n${message}`, { cause: error });
}

function integerFrom(env: Env, key: string): number | undefined {
  const text = env[key]?.trim();
  if (text === undefined || text === '') return undefined;
  if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new TypeError(`${key}: must be an integer, got ${JSON.stringify(text.slice(0, 20))}`);
  return Number(text);
}
