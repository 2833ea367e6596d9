// Talks to the "browser-demo" kite with kite.js. Query parameters:
//   transport=websocket|xhr-polling  the SockJS transport (default websocket);
//             raw-websocket          a plain WebSocket to /kite, without SockJS
//   kite=URL                         the kite's SockJS URL (default: this page's origin + /kite)
//   run=0                            connect, but make no calls until asked
// window.demo contains what happened, for people in the console and for the tests.
'use strict'

const params = new URLSearchParams(window.location.search)
const transport = params.get('transport') || 'websocket'
const kiteURL = params.get('kite') || `${window.location.origin}/kite`

const demo = {
  transport,
  url: kiteURL,
  opens: 0,
  closes: 0,
  ticks: [],
  log: [],
  kite: null,
  // Calls a method and resolves with {result} or {error: {type, message}}. It never rejects.
  call(method, ...args) {
    return new Promise((resolve) => {
      demo.kite.tell(method, args, (err, result) => {
        const outcome = err
          ? { error: { type: err.type || null, message: err.message || String(err) } }
          : { result }
        record(`${method}(${args.filter((arg) => typeof arg !== 'function').map(JSON.stringify).join(', ')})`,
          outcome)
        resolve(outcome)
      })
    })
  },
  // Resolves once the connection has opened `count` times in all.
  opened(count) {
    return new Promise((resolve) => {
      const check = () => (demo.opens >= count ? resolve(demo.opens) : demo.kite.once('open', check))
      check()
    })
  },
  // Resolves once the connection has closed `count` times in all.
  closed(count) {
    return new Promise((resolve) => {
      const check = () => (demo.closes >= count ? resolve(demo.closes) : demo.kite.once('close', check))
      check()
    })
  },
  async runAll() {
    const square = await demo.call('square', 4)
    const countdown = await demo.call('countdown', 3, (number) => {
      demo.ticks.push(number)
      record('tick', { result: number })
    })
    const failure = await demo.call('fail', 'shown in the page')
    return { square, countdown, failure, ticks: demo.ticks.slice() }
  },
}
window.demo = demo

function record(label, outcome) {
  demo.log.push({ label, ...outcome })
  const item = document.createElement('li')
  item.textContent = outcome.error
    ? `${label} failed: ${outcome.error.type}: ${outcome.error.message}`
    : `${label} = ${JSON.stringify(outcome.result)}`
  document.getElementById('log').appendChild(item)
}

function setStatus(state) {
  const status = document.getElementById('status')
  status.textContent = state
  status.dataset.state = state
  document.getElementById('run').disabled = state !== 'open'
}

document.getElementById('url').textContent = kiteURL
document.getElementById('transport').textContent = transport
if (typeof Kite === 'undefined') {
  setStatus('kite.js did not load: run npm ci in examples/browser, then reload')
  throw new Error('kite.js did not load from /kite.js')
}

const connection = transport === 'raw-websocket'
  ? { url: kiteURL.replace(/^http/, 'ws'), transportClass: Kite.transport.WebSocket }
  : { url: kiteURL, transportClass: Kite.transport.SockJS, transportOptions: { transports: [transport] } }
demo.kite = new Kite({
  name: 'browser-page',
  autoReconnect: true,
  logLevel: params.get('debug') ? Kite.DebugLevel.DEBUG : Kite.DebugLevel.ERROR,
  ...connection,
})
demo.kite.on('open', () => {
  demo.opens += 1
  setStatus('open')
})
demo.kite.on('close', () => {
  demo.closes += 1
  setStatus('closed')
})
document.getElementById('run').addEventListener('click', () => demo.runAll())
if (params.get('run') !== '0') {
  demo.done = demo.opened(1).then(() => demo.runAll())
}
