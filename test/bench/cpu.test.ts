import { spawn } from 'node:child_process';
import t from 'tap';
import { clockTicks, cpuWindow, descendants, msPerCheck, msPerCheckAtRate, parseStat, sampleCpu } from '../../bench/support/cpu.js';

// A /proc/<pid>/stat line as Linux writes it: pid (comm) state ppid ... utime(14) stime(15) ...
const stat = (comm: string, ppid: number, utime: number, stime: number) =>
  `4242 (${comm}) S ${ppid} 4242 4242 0 -1 4194560 1200 0 0 0 ${utime} ${stime} 0 0 20 0 11 0 968130 1000 416 18446744073709551615\n`;

t.test('utime + stime and the parent, for any command name', async (t) => {
  t.same(parseStat(stat('node', 17, 250, 40)), { ppid: 17, ticks: 290 });
  // A name with spaces and parentheses would shift every field counted from the start.
  t.same(parseStat(stat('we) ird (name', 3, 7, 5)), { ppid: 3, ticks: 12 });
  t.same(parseStat(stat('', 1, 0, 0)), { ppid: 1, ticks: 0 });
  t.throws(() => parseStat('4242 node S 1'), /no command name/);
  t.throws(() => parseStat('4242 (node) S'), /unreadable/);
});

t.test('a process tree: the root, its children and theirs, nothing else', async (t) => {
  const parents = new Map([
    [10, 1],
    [11, 10],
    [12, 10],
    [13, 12],
    [20, 1],
    [21, 20],
  ]);
  t.same(descendants(10, parents).sort(), [10, 11, 12, 13]);
  t.same(descendants(13, parents), [13]);
  t.same(descendants(99, parents), [99], 'an unknown pid is itself alone');
  // A parent loop (not possible in /proc, possible in a race of reads) must not hang the walk.
  const loop = new Map([
    [5, 6],
    [6, 5],
  ]);
  t.same(descendants(5, loop).sort(), [5, 6]);
});

t.test('CPU per Check from a count, and from a rate over the window', async (t) => {
  const window = cpuWindow({ seconds: 1.5, at: 1000, processes: 1 }, { seconds: 2.5, at: 5000, processes: 3 });
  t.same(window, { seconds: 1, wallSeconds: 4, processes: 3 });
  t.equal(msPerCheck(window, 4000), 0.25);
  t.ok(Number.isNaN(msPerCheck(window, 0)));
  // 0.25 CPU seconds per wall second at 1000 Checks/s: 0.25 ms each.
  t.equal(msPerCheckAtRate(window, 1000), 0.25);
  t.ok(Number.isNaN(msPerCheckAtRate(window, 0)));
  t.ok(Number.isNaN(msPerCheckAtRate({ seconds: 1, wallSeconds: 0, processes: 1 }, 1000)));
});

t.test('a live sample counts a child process and never goes backwards', async (t) => {
  t.ok(clockTicks() > 0);
  const child = spawn(process.execPath, ['-e', 'const end = Date.now() + 20000; while (Date.now() < end);'], { stdio: 'ignore' });
  t.teardown(() => child.kill('SIGKILL'));
  await new Promise((resolve) => child.once('spawn', resolve));
  const first = sampleCpu(process.pid);
  t.ok(first.processes >= 2, `the child is in the tree (${first.processes} processes)`);
  // Bounded: the busy child shows up as CPU well within 10 s on any machine.
  let later = sampleCpu(process.pid);
  for (let i = 0; i < 200 && later.seconds <= first.seconds; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    later = sampleCpu(process.pid);
  }
  t.ok(later.seconds > first.seconds, 'the tree spent CPU between the samples');
  t.ok(later.at > first.at);
  t.throws(() => sampleCpu(2 ** 30), /no process/);
});
