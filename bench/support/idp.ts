/** The driver's handle on the fake authorization server process (fake-idp.ts). */
import { logLines, waitFor } from '../../test/support/service-process.js';
import { benchScript } from './paths.js';
import type { IdpRequest } from './fake-idp.js';
import { isRunning, startNode, stopProc } from './processes.js';

export interface Idp {
  url: string;
  /** Introspection requests received since the last reset. */
  count(): Promise<number>;
  reset(): Promise<void>;
  /** Answer every following request after `ms`. */
  delay(ms: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startIdp(): Promise<Idp> {
  const proc = startNode(benchScript('support/fake-idp.js'), [], { ipc: true });
  const line = await waitFor(
    () => {
      if (!isRunning(proc)) throw new Error(`the fake authorization server exited: ${proc.stderr()}`);
      return logLines(proc.stdout()).find((l) => l.msg === 'serving');
    },
    10_000,
    'the fake authorization server',
  );
  let next = 0;
  const pending = new Map<number, (count: number) => void>();
  proc.child.on('message', (reply: { id: number; count: number }) => {
    pending.get(reply.id)?.(reply.count);
    pending.delete(reply.id);
  });
  const ask = (command: IdpRequest): Promise<number> =>
    new Promise((resolve, reject) => {
      const id = (next += 1);
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error('the fake authorization server did not answer within 5 s'));
      }, 5000);
      pending.set(id, (count) => {
        clearTimeout(timer);
        resolve(count);
      });
      proc.child.send({ ...command, id });
    });
  return {
    url: line.url as string,
    count: () => ask({ op: 'count' }),
    reset: async () => {
      await ask({ op: 'reset' });
    },
    delay: async (ms) => {
      await ask({ op: 'delay', ms });
    },
    stop: async () => {
      await stopProc(proc);
    },
  };
}
