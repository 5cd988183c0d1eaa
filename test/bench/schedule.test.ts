import t from 'tap';
import { dueAt, dueCount, firstMeasured, InFlight, keptUp, Recorder, totalCount, wakeUps, type Schedule } from '../../bench/open-loop/schedule.js';

const schedule: Schedule = { rate: 1000, warmUpS: 1, durationS: 2 };

t.test('the schedule is by the clock: request i at i / rate', async (t) => {
  t.equal(dueAt(schedule, 0), 0);
  t.equal(dueAt(schedule, 1500), 1500);
  t.equal(dueAt({ rate: 4000, warmUpS: 0, durationS: 1 }, 3), 0.75);
  t.equal(totalCount(schedule), 3000);
  t.equal(firstMeasured(schedule), 1000);
  t.equal(firstMeasured({ rate: 3, warmUpS: 0.5, durationS: 1 }), 2, 'the first request due at or after the warm-up');
  t.equal(dueCount(schedule, -1), 0);
  t.equal(dueCount(schedule, 0), 1, 'request 0 is due at the start');
  t.equal(dueCount(schedule, 0.999), 1);
  t.equal(dueCount(schedule, 1), 2);
  t.equal(dueCount(schedule, 2500.4), 2501);
  // However late the generator looks, it never sends more than the schedule holds.
  t.equal(dueCount(schedule, 1e9), 3000);
});

t.test('latency runs from the due time, not from the send', async (t) => {
  const recorder = new Recorder({ rate: 1000, warmUpS: 0, durationS: 0.004 });
  // Request 0 sent on time, answered in 0.2 ms.
  recorder.sent(0, 0);
  recorder.ended(0, 0.2, 'ok');
  // Request 1, due at 1 ms, sent 5 ms late (the generator stalled): its 0.2 ms of service time counts as 5.2.
  recorder.sent(1, 6);
  recorder.ended(1, 6.2, 'ok');
  recorder.sent(2, 6);
  recorder.ended(2, 7, 'error');
  recorder.ended(2, 7.1, 'ok');
  recorder.sent(3, 6);
  const summary = recorder.summary();
  t.equal(summary.scheduled, 4);
  t.equal(summary.ok, 2);
  t.equal(summary.errors, 1, 'only the first outcome of a request counts');
  t.equal(summary.unanswered, 1);
  t.equal(summary.wrong, 0);
  t.equal(summary.latency.p50.toFixed(3), '0.200');
  t.equal(summary.latency.max.toFixed(3), '5.200');
  t.equal(summary.sendLag.max, 5);
  t.equal(summary.fromSend.max.toFixed(3), '0.200', "timed from the send, the stall is the generator's, not the server's");
  t.equal(summary.fromSend.p50.toFixed(3), '0.200');
  t.equal(summary.sendLag.p50, 3, 'lags 0, 5, 4, 3: the nearest-rank median is 3');
  t.equal(summary.answeredPerSec, 500, '2 OK answers over a 4 ms window');
  t.equal(summary.sentPerSec, 3 / 0.006, '4 sends over 6 ms are 3 intervals');
});

t.test('the warm-up is sent but not recorded, nor anything past the schedule', async (t) => {
  const recorder = new Recorder({ rate: 100, warmUpS: 0.02, durationS: 0.02 });
  for (let i = 0; i < 4; i += 1) {
    recorder.sent(i, i * 10);
    recorder.ended(i, i * 10 + (i < 2 ? 1000 : 1), 'ok');
  }
  recorder.ended(99, 5, 'ok');
  const summary = recorder.summary();
  t.equal(summary.scheduled, 2);
  t.equal(summary.ok, 2);
  t.equal(summary.latency.max, 1, "the warm-up's slow answers are not in the percentiles");
});

t.test('p99 and p99.9 over a known distribution', async (t) => {
  const recorder = new Recorder({ rate: 1000, warmUpS: 0, durationS: 10 });
  // 10,000 answers: 9,980 at 1 ms, 10 at 50 ms, 10 at 400 ms.
  for (let i = 0; i < 10_000; i += 1) {
    recorder.sent(i, dueAt({ rate: 1000, warmUpS: 0, durationS: 10 }, i));
    const latency = i < 9980 ? 1 : i < 9990 ? 50 : 400;
    recorder.ended(i, i + latency, 'ok');
  }
  const { latency } = recorder.summary();
  t.equal(latency.p50, 1);
  t.equal(latency.p99, 1);
  t.equal(latency.p999, 50);
  t.equal(latency.max, 400);
});

t.test('a row is flagged when the generator fell behind its schedule', async (t) => {
  const onTime = new Recorder({ rate: 1000, warmUpS: 0, durationS: 0.1 });
  const late = new Recorder({ rate: 1000, warmUpS: 0, durationS: 0.1 });
  for (let i = 0; i < 100; i += 1) {
    onTime.sent(i, i + 0.05);
    onTime.ended(i, i + 0.3, 'ok');
    // Every tenth request 3 ms late: the rate is kept, the p99 lateness is not.
    late.sent(i, i + (i % 10 === 9 ? 3 : 0.05));
    late.ended(i, i + 3.3, 'ok');
  }
  t.ok(keptUp(onTime.summary()));
  t.notOk(keptUp(late.summary()));
  const slow = new Recorder({ rate: 1000, warmUpS: 0, durationS: 0.1 });
  // Sent at 800/s from the start, so ever later: both the rate and the lateness fail.
  for (let i = 0; i < 100; i += 1) slow.sent(i, i * 1.25);
  t.notOk(keptUp(slow.summary()));
});

t.test('the ticker wakes at every due time, or every minimum gap when they are closer, through the last due time', async (t) => {
  for (const rate of [10, 1000, 3000, 4000, 10_000, 50_000]) {
    const s: Schedule = { rate, warmUpS: 0.5, durationS: 1.3 };
    const { step, count } = wakeUps(s, 0.25);
    t.ok(step >= 0.25, `${rate}/s: no two wake-ups closer than the gap`);
    t.ok(step <= Math.max(1000 / rate, 0.25), `${rate}/s: never a due time left waiting longer than the gap`);
    const last = dueAt(s, totalCount(s) - 1);
    t.ok((count - 1) * step >= last - 1e-9, `${rate}/s: the last wake-up is at or after the last due time`);
    t.ok((count - 2) * step < last, `${rate}/s: and no wake-up after it`);
    // Every request is due by some wake-up, and that wake-up follows its due time by less than a step.
    const dueBy = (k: number) => dueCount(s, k * step);
    t.equal(dueBy(count - 1), totalCount(s), `${rate}/s: all sent by the last wake-up`);
  }
  t.same(wakeUps({ rate: 1000, warmUpS: 0, durationS: 0.001 }, 0.25), { step: 1, count: 1 }, 'one request: one wake-up at the start');
});

t.test('one sweep finds the overdue requests in flight, passing the settled ones', async (t) => {
  const inFlight = new InFlight<{ id: number; sentAt: number; settled: boolean }>();
  const calls = Array.from({ length: 6 }, (_, id) => ({ id, sentAt: id * 10, settled: false }));
  for (const call of calls) inFlight.add(call);
  calls[0]!.settled = true;
  calls[2]!.settled = true;
  calls[4]!.settled = true;
  t.same(inFlight.takeOverdue(-1), [], 'nothing sent that early');
  t.same(
    inFlight.takeOverdue(25).map((c) => c.id),
    [1],
    'the settled head is dropped, the overdue one taken, and the sweep stops at the first one still in time',
  );
  t.equal(inFlight.size, 3, 'request 2, settled, passed on the way to 1; 3, 4 and 5 still held');
  t.same(inFlight.takeOverdue(25), [], 'a request is taken once');
  calls[3]!.settled = true;
  t.same(inFlight.takeOverdue(1000).map((c) => c.id), [5], 'settled ones behind the head are passed too');
  t.equal(inFlight.size, 0);
  // Many settled requests are dropped in bulk, and what is left after stays in order.
  const many = Array.from({ length: 10_000 }, (_, id) => ({ id, sentAt: id, settled: id < 9_000 }));
  for (const call of many) inFlight.add(call);
  t.same(inFlight.takeOverdue(9_001).map((c) => c.id), [9_000, 9_001]);
  t.equal(inFlight.size, 998);
  t.same(inFlight.takeOverdue(1e9).length, 998);
});
