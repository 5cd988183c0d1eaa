/**
 * Memory per cached answer, measured in the real service process: it runs
 * with --expose-gc and a preloaded probe (support/gc-probe.ts) that collects
 * garbage and reports process.memoryUsage() on SIGUSR2. After a warm-up, the
 * heap is read, N distinct tokens go through gRPC (the fake authorization
 * server answers each with a typical 12-member response), and it is read
 * again; the growth is divided by the growth of authz_cache_entries.
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
  heapBeforeMiB: number;
  heapAfterMiB: number;
  rssAfterMiB: number;
}

const FILL_CONCURRENCY = 64;
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
    // quick-lru may start evicting at half of maxCacheEntries: stay well below that.
    maxCacheEntries: Math.max(200_000, Math.ceil(settings.memoryEntries * 2.5)),
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
    const warm = await checkLoop(service, FILL_CONCURRENCY, 60, 2000);
    if (warm.errors > 0 || warm.wrong > 0) throw new Error('memory: the warm-up Checks were not all allowed');
    const entriesBefore = await entries();
    const before = await usage();
    const fill = await checkLoop(service, FILL_CONCURRENCY, FILL_MAX_SECONDS, settings.memoryEntries);
    if (fill.errors > 0 || fill.wrong > 0) throw new Error(`memory: ${fill.errors} failed RPCs and ${fill.wrong} denies while filling`);
    const after = await usage();
    const added = (await entries()) - entriesBefore;
    if (added !== fill.count) throw new Error(`memory: ${fill.count} new tokens but the cache grew by ${added} entries`);
    const MiB = 2 ** 20;
    return {
      method: 'service process (gRPC fill; --expose-gc probe, heap after gc)',
      entries: added,
      fillSeconds: fill.seconds,
      heapPerEntry: (after.heapUsed - before.heapUsed) / added,
      externalPerEntry: (after.external - before.external) / added,
      rssPerEntry: (after.rss - before.rss) / added,
      heapBeforeMiB: before.heapUsed / MiB,
      heapAfterMiB: after.heapUsed / MiB,
      rssAfterMiB: after.rss / MiB,
    };
  } finally {
    await service.stop();
    rmSync(file, { force: true });
  }
}
