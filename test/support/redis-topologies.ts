// Redis as production runs it, from the Debian packages, on free loopback
// ports, without persistence: a Sentinel-managed master with one replica
// (redis-sentinel), and a Redis Cluster of three masters, each with a
// replica (redis-server --cluster-enabled yes, joined by redis-cli).
// Missing binaries: `missing` says which, for the tests to skip with.
// No test-framework imports here.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SERVER = process.env.REDIS_SERVER ?? 'redis-server';
const SENTINEL = process.env.REDIS_SENTINEL ?? 'redis-sentinel';
const CLI = process.env.REDIS_CLI ?? 'redis-cli';

/** Why these tests cannot run here, or null when they can. */
export function missing(binaries: 'sentinel' | 'cluster'): string | null {
  const needed = binaries === 'sentinel' ? [SERVER, SENTINEL, CLI] : [SERVER, CLI];
  for (const binary of needed) {
    const probe = spawnSync(binary, ['--version'], { encoding: 'utf8' });
    if (probe.error || probe.status !== 0) {
      const pkg = binary === SENTINEL ? 'redis-sentinel' : binary === CLI ? 'redis-tools' : 'redis-server';
      return `${binary} not found: apt-get install -y ${pkg} (CI must install it)`;
    }
  }
  return null;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitForPort(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`exited: ${output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.end();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`nothing listened on ${port} within 10 s: ${output()}`);
}

interface Node {
  readonly port: number;
  kill(): Promise<void>;
}

async function launch(command: string, args: string[], port: number, cwd: string): Promise<Node> {
  let output = '';
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
  child.stderr!.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
  await waitForPort(port, child, () => output);
  return {
    port,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

const serverArgs = (port: number) => ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];

function cli(port: number, args: string[]): string {
  const result = spawnSync(CLI, ['-h', '127.0.0.1', '-p', String(port), ...args], { encoding: 'utf8', timeout: 20_000 });
  if (result.status !== 0) throw new Error(`redis-cli ${args.join(' ')}: ${result.stderr || result.stdout}`);
  return result.stdout.trim();
}

async function until<T>(probe: () => T | undefined, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    let value: T | undefined;
    try {
      value = probe();
    } catch {
      value = undefined;
    }
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export interface SentinelSet {
  readonly masterName: string;
  readonly sentinel: { host: string; port: number };
  /** The port of the master as the Sentinel names it now. */
  masterPort(): number;
  /** Kill the master and wait until the Sentinel names the replica instead. */
  failover(): Promise<void>;
  stop(): Promise<void>;
}

/** A master, one replica and one Sentinel (quorum 1, a master down after 500 ms). */
export async function startSentinelSet(): Promise<SentinelSet> {
  const dir = mkdtempSync(join(tmpdir(), 'authz-sentinel-'));
  const nodes: Node[] = [];
  const stop = async () => {
    for (const node of nodes) await node.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [masterPort, replicaPort, sentinelPort] = [await freePort(), await freePort(), await freePort()];
    const master = await launch(SERVER, serverArgs(masterPort), masterPort, dir);
    nodes.push(master);
    nodes.push(await launch(SERVER, [...serverArgs(replicaPort), '--replicaof', '127.0.0.1', String(masterPort)], replicaPort, dir));
    await until(() => (/master_link_status:up/.test(cli(replicaPort, ['info', 'replication'])) ? true : undefined), 10_000, 'the replica in sync');
    const name = 'authz-master';
    const file = join(dir, 'sentinel.conf');
    writeFileSync(
      file,
      [
        `port ${sentinelPort}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${masterPort} 1`,
        `sentinel down-after-milliseconds ${name} 500`,
        `sentinel failover-timeout ${name} 5000`,
        `sentinel parallel-syncs ${name} 1`,
        '',
      ].join('\n'),
    );
    nodes.push(await launch(SENTINEL, [file], sentinelPort, dir));
    const masterNow = () => Number(cli(sentinelPort, ['sentinel', 'get-master-addr-by-name', name]).split('\n')[1]);
    // The Sentinel has seen the replica: a failover can elect it.
    await until(() => (/slaves=1|num-slaves.?1/.test(cli(sentinelPort, ['info', 'sentinel'])) ? true : undefined), 10_000, 'the Sentinel seeing the replica');
    return {
      masterName: name,
      sentinel: { host: '127.0.0.1', port: sentinelPort },
      masterPort: masterNow,
      async failover() {
        await master.kill();
        await until(() => (masterNow() === replicaPort ? true : undefined), 20_000, 'the Sentinel electing the replica');
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

export interface ClusterSet {
  readonly nodes: Array<{ host: string; port: number }>;
  /** Kill the master serving `slot` and wait until its replica took over and the cluster is ok again. */
  failover(slot: number): Promise<void>;
  stop(): Promise<void>;
}

/** Three masters and three replicas, cluster-node-timeout 1000 ms. */
export async function startClusterSet(): Promise<ClusterSet> {
  const dir = mkdtempSync(join(tmpdir(), 'authz-cluster-'));
  const nodes = new Map<number, Node>();
  const stop = async () => {
    for (const node of nodes.values()) await node.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ports: number[] = [];
    for (let i = 0; i < 6; i++) ports.push(await freePort());
    for (const port of ports) {
      const args = [
        ...serverArgs(port),
        '--cluster-enabled', 'yes',
        '--cluster-config-file', join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout', '1000',
        // A replica may take over however long its link was down (the test kills its master at once).
        '--cluster-replica-validity-factor', '0',
      ];
      nodes.set(port, await launch(SERVER, args, port, dir));
    }
    cli(ports[0]!, ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes']);
    const ok = (port: number) => /cluster_state:ok/.test(cli(port, ['cluster', 'info']));
    await until(() => (ports.every(ok) ? true : undefined), 20_000, 'every node seeing the cluster ok');
    const synced = (port: number) => {
      const info = cli(port, ['info', 'replication']);
      return !/role:slave/.test(info) || /master_link_status:up/.test(info);
    };
    await until(() => (ports.every(synced) ? true : undefined), 20_000, 'every replica in sync with its master');
    return {
      nodes: ports.slice(0, 3).map((port) => ({ host: '127.0.0.1', port })),
      async failover(slot: number) {
        const alive = [...nodes.keys()][0]!;
        const owner = (port: number) => {
          const shards = cli(port, ['cluster', 'nodes']).split('\n').map((line) => line.split(' '));
          for (const fields of shards) {
            if (!fields[2]?.includes('master') || fields[2].includes('fail')) continue;
            for (const range of fields.slice(8)) {
              const [from, to] = range.split('-').map(Number);
              if (slot >= from! && slot <= (to ?? from!)) return Number(fields[1]!.split(':')[1]!.split('@')[0]);
            }
          }
          return undefined;
        };
        const master = owner(alive);
        if (master === undefined) throw new Error(`no master serves slot ${slot}`);
        await nodes.get(master)!.kill();
        nodes.delete(master);
        const other = [...nodes.keys()][0]!;
        await until(() => {
          const now = owner(other);
          return now !== undefined && now !== master && ok(other) ? true : undefined;
        }, 20_000, 'a replica taking over');
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
