/**
 * Memory per cached answer, measured in the real service process: it runs
 * with --expose-gc and a preloaded probe (support/gc-probe.ts) that collects
 * garbage and reports process.memoryUsage() on SIGUSR2. After a warm-up, the
 * heap is read, N distinct tokens go through gRPC (the fake authorization
 * server answers each with a typical 12-member response), and it is read
 * again; the growth is divided by the growth of authz_cache_entries.
 * maxCacheEntries is set to exactly the warm-up plus N: every answer must be
 * held, and past the fill, as many new tokens again as there is room left
 * plus OVERFLOW must leave exactly maxCacheEntries held and OVERFLOW evicted.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { waitFor } from '../../test/support/service-process.js';
import type { Settings } from '../settings.js';
import type { Idp } from '../support/idp.js';
import { benchScript } from '../support/paths.js';
import { scratchDir } from '../support/processes.js';
import { startService } from '../support/service.js';
import { checkLoop } from './cold-path.js';

export interface Memory {
  method: string;
  entries: number;
  fillSeconds: number;
  heapPerEntry: number;
  /** Memory outside the JS heap (Buffer contents) per entry. */
  externalPerEntry: number;
  rssPerEntry: number;
  /** maxCacheEntries of the run, and what the cache held after OVERFLOW tokens beyond it (must be equal). */
  capacity: number;
  heldAtCapacity: number;
  /** authz_cache_evictions_total after the overflow (must be OVERFLOW). */
  evictions: number;
  heapBeforeMiB: number;
  heapAfterMiB: number;
  rssAfterMiB: number;
}

const FILL_CONCURRENCY = 64;
const WARM_COUNT = 2000;
/** New tokens sent once the cache is full. */
const OVERFLOW = 500;
/** On a quiet machine 100k Checks take well under a minute; a busy one reports what it filled by then. */
const FILL_MAX_SECONDS = 180;

interface Usage {
  gc: boolean;
  heapUsed: number;
  external: number;
  rss: number;
}

export async function measureMemory(idp: Idp, settings: Settings): Promise<Memory> {
  const file = join(scratchDir('authz-bench-memory-'), 'usage.json');
  const probe = pathToFileURL(benchScript('support/gc-probe.js')).href;
  const service = await startService({
    idpUrl: idp.url,
    // Exactly what the run fills: the cache holds maxCacheEntries answers, no fewer.
    maxCacheEntries: WARM_COUNT + settings.memoryEntries,
    nodeFlags: ['--expose-gc', '--import', probe],
    env: { BENCH_MEMORY_FILE: file },
  });
  const usage = async (): Promise<Usage> => {
    rmSync(file, { force: true });
    service.proc.child.kill('SIGUSR2');
    const text = await waitFor(() => (existsSync(file) ? readFileSync(file, 'utf8') || undefined : undefined), 10_000, 'the memory probe');
    const parsed = JSON.parse(text) as Usage;
    if (!parsed.gc) throw new Error('memory: gc() is not exposed in the service process');
    return parsed;
  };
  const entries = async () => (await service.metrics()).get('authz_cache_entries') ?? Number.NaN;
  try {
    const warm = await checkLoop(service, FILL_CONCURRENCY, 60, WARM_COUNT);
    if (warm.errors > 0 || warm.wrong > 0) throw new Error('memory: the warm-up Checks were not all allowed');
    const entriesBefore = await entries();
    const before = await usage();
    const fill = await checkLoop(service, FILL_CONCURRENCY, FILL_MAX_SECONDS, settings.memoryEntries);
    if (fill.errors > 0 || fill.wrong > 0) throw new Error(`memory: ${fill.errors} failed RPCs and ${fill.wrong} denies while filling`);
    const after = await usage();
    const added = (await entries()) - entriesBefore;
    if (added !== fill.count) throw new Error(`memory: ${fill.count} new tokens but the cache grew by ${added} entries`);
    const capacity = WARM_COUNT + settings.memoryEntries;
    const room = capacity - (await entries());
    const overflow = await checkLoop(service, FILL_CONCURRENCY, FILL_MAX_SECONDS, room + OVERFLOW);
    if (overflow.errors > 0 || overflow.wrong > 0) throw new Error('memory: the overflow Checks were not all allowed');
    const metrics = await service.metrics();
    const heldAtCapacity = metrics.get('authz_cache_entries') ?? Number.NaN;
    const evictions = metrics.get('authz_cache_evictions_total') ?? Number.NaN;
    if (overflow.count === room + OVERFLOW && (heldAtCapacity !== capacity || evictions !== OVERFLOW)) {
      throw new Error(`memory: maxCacheEntries ${capacity}, but ${heldAtCapacity} held and ${evictions} evicted after ${OVERFLOW} beyond it`);
    }
    const MiB = 2 ** 20;
    return {
      method: 'service process (gRPC fill; --expose-gc probe, heap after gc)',
      entries: added,
      fillSeconds: fill.seconds,
      heapPerEntry: (after.heapUsed - before.heapUsed) / added,
      externalPerEntry: (after.external - before.external) / added,
      rssPerEntry: (after.rss - before.rss) / added,
      capacity,
      heldAtCapacity,
      evictions,
      heapBeforeMiB: before.heapUsed / MiB,
      heapAfterMiB: after.heapUsed / MiB,
      rssAfterMiB: after.rss / MiB,
    };
  } finally {
    await service.stop();
    rmSync(file, { force: true });
  }
}
