/**
 * Start-up: from spawning `node dist/src/main.js` to the gRPC health Check
 * answering SERVING, polled every 5 ms (a TCP connect first, then a Check on
 * a fresh channel, so grpc-js's reconnect back-off never adds to the figure).
 * The median of several starts.
 */
import { rmSync } from 'node:fs';
import { freePort } from '../../test/support/service-process.js';
import type { Settings } from '../settings.js';
import type { Idp } from '../support/idp.js';
import { stopProc } from '../support/processes.js';
import { healthStatus, spawnService, waitUntilServing, writeServiceConfig } from '../support/service.js';
import { median } from '../support/stats.js';

export interface Startup {
  /** Milliseconds of each start. */
  samples: number[];
  median: number;
}

async function startOnce(idp: Idp): Promise<number> {
  const options = { idpUrl: idp.url, grpcPort: await freePort(), opsPort: await freePort() };
  const { dir, file } = writeServiceConfig(options);
  const started = performance.now();
  const proc = spawnService(file, options);
  try {
    return await waitUntilServing(proc, options.grpcPort, started);
  } finally {
    await stopProc(proc);
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function measureStartup(idp: Idp, settings: Settings): Promise<Startup> {
  await healthStatus('127.0.0.1:1'); // parse the health proto before the clock starts
  const samples: number[] = [];
  for (let i = 0; i < settings.starts; i += 1) samples.push(await startOnce(idp));
  return { samples, median: median(samples) };
}
