// Vercel's `resumable-stream` on a given Redis: one stream of N chunks, read by the
// request that creates it (the producer side) and by one reader that resumes it.
//
//   node benchmarks/vercel_runner.mjs REDIS_URL N ROUNDS   (cwd: the folder npm installed into)
//
// Prints one JSON object: the seconds of each round (from creating the stream until
// both readers have every chunk) and the characters each reader received.
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";

const require = createRequire(`${process.cwd()}/`);
const [url, n, rounds] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
process.env.REDIS_URL = url;
const { createResumableStreamContext } = require("resumable-stream");

const pending = [];
const ctx = createResumableStreamContext({
  waitUntil: (promise) => pending.push(promise),
  keyPrefix: `bench${Date.now()}`,
});

// The content: N chunks of "tokn", produced as fast as they are read, once released.
function makeStream(gate) {
  let sent = 0;
  return () =>
    new ReadableStream({
      async pull(controller) {
        await gate;
        if (sent === n) {
          controller.close();
          return;
        }
        controller.enqueue("tokn");
        sent += 1;
      },
    });
}

async function drain(stream) {
  let chars = 0;
  for await (const chunk of stream) chars += chunk.length;
  return chars;
}

const seconds = [];
const received = [];
for (let round = 0; round < rounds; round++) {
  const id = `vercel-${round}`;
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  const start = performance.now();
  const producer = await ctx.resumableStream(id, makeStream(gate));
  const resumer = await ctx.resumeExistingStream(id);
  if (producer === null || resumer === null) throw new Error("the stream could not be opened");
  release();
  const counts = await Promise.all([drain(producer), drain(resumer)]);
  seconds.push((performance.now() - start) / 1000);
  received.push(counts);
}
await Promise.all(pending);
process.stdout.write(JSON.stringify({ seconds, received }) + "\n");
process.exit(0);
