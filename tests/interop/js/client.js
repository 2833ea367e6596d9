#!/usr/bin/env node
// kite.js 1.0.13 client CLI for the interop tests.
//
// Usage: node client.js URL TRANSPORT CALLS [--timeout SECONDS] [--token TOKEN]
//   URL        ws://host:port/kite for "websocket", http://host:port/kite for the SockJS transports
//   TRANSPORT  websocket  - kite.js default transport, a plain WebSocket (npm ws)
//              sockjs     - Kite.transport.SockJS with sockjs-client's default transport list
//              sockjs-xhr - Kite.transport.SockJS restricted to xhr-polling
//   CALLS      JSON list of [method, params] pairs. params is handed to kite.tell()
//              unchanged, so [4] is sent as withArgs [4] and a bare 4 as withArgs 4.
//   --token    a token from Kontrol, sent with every call as
//              {"type": "token", "key": TOKEN}. The environment variable
//              KITEJS_TOKEN sets it too and keeps it out of process listings.
//              --token wins when both are given. Without either, calls carry
//              no authentication.
//
// Prints one JSON line per call on stdout:
//   {"method": ..., "result": ..., "error": {"type", "message", "code"} | null}
// and exits 0. Connection failures and timeouts print a message on stderr and
// exit 1; bad arguments exit 2.
'use strict'

const { parseArgs } = require('node:util')

// kite.js logs through console.info and console.log. Send those to stderr so
// stdout carries only the result lines.
console.log = console.info = console.warn = (...args) => console.error(...args)

const Kite = require('kite.js').Kite

// kite.js log levels: 1 = ERROR, 5 = DEBUG.
const LOG_LEVEL = process.env.KITEJS_DEBUG ? 5 : 1
const EXIT_FAILURE = 1
const EXIT_USAGE = 2

function usage(message) {
  process.stderr.write(`client.js: ${message}\n`)
  process.stderr.write(
    'usage: node client.js URL websocket|sockjs|sockjs-xhr CALLS_JSON [--timeout SECONDS] [--token TOKEN]\n'
  )
  process.exit(EXIT_USAGE)
}

function fail(message) {
  process.stderr.write(`client.js: ${message}\n`)
  process.exit(EXIT_FAILURE)
}

function parseCommandLine() {
  let parsed
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        timeout: { type: 'string', default: '10' },
        token: { type: 'string' },
      },
    })
  } catch (err) {
    usage(err.message)
  }
  const { positionals, values } = parsed
  if (positionals.length !== 3) {
    usage(`expected 3 positional arguments, got ${positionals.length}`)
  }
  const [url, transport, callsText] = positionals

  const timeoutMs = Number(values.timeout) * 1000
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    usage(`invalid --timeout ${JSON.stringify(values.timeout)}: expected a positive number of seconds`)
  }

  let calls
  try {
    calls = JSON.parse(callsText)
  } catch (err) {
    usage(`invalid CALLS ${JSON.stringify(callsText)}: ${err.message}`)
  }
  const wellFormed = (call) => Array.isArray(call) && call.length === 2 && typeof call[0] === 'string'
  if (!Array.isArray(calls) || !calls.every(wellFormed)) {
    usage(`invalid CALLS ${JSON.stringify(callsText)}: expected a JSON list of [method, params] pairs`)
  }
  // An empty KITEJS_TOKEN counts as unset, as an empty variable usually does.
  const token = values.token !== undefined ? values.token : process.env.KITEJS_TOKEN || undefined
  if (token === '') {
    usage('invalid --token "": expected a token from Kontrol, or leave the option out to send no authentication')
  }
  return { url, transport, calls, timeoutMs, token }
}

function transportOptions(transport) {
  switch (transport) {
    case 'websocket':
      return { transportClass: Kite.transport.WebSocket }
    case 'sockjs':
      return { transportClass: Kite.transport.SockJS }
    case 'sockjs-xhr':
      return {
        transportClass: Kite.transport.SockJS,
        transportOptions: { transports: ['xhr-polling'] },
      }
    default:
      return usage(`invalid TRANSPORT ${JSON.stringify(transport)}: expected websocket, sockjs or sockjs-xhr`)
  }
}

class DeadlineError extends Error {}

function withTimeout(promise, ms, label) {
  let timer
  const expiry = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(`${label} timed out after ${ms / 1000} s`)), ms)
  })
  return Promise.race([promise, expiry]).finally(() => clearTimeout(timer))
}

// Resolves on the first 'open' event and rejects when the transport reports
// an error or closes before opening.
function connect(kite, url, timeoutMs) {
  const opened = new Promise((resolve, reject) => {
    kite.once('open', resolve)
    kite.on('error', (text, event) => {
      const detail = event && (event.message || (event.error && event.error.message))
      reject(new Error(`connection to ${url} failed: ${detail || text}`))
    })
    kite.once('close', (event) => {
      const code = event && event.code
      const reason = event && event.reason
      reject(new Error(`connection to ${url} closed before it opened (code ${code}, reason ${JSON.stringify(reason || '')})`))
    })
  })
  kite.connect()
  return withTimeout(opened, timeoutMs, `connecting to ${url}`)
}

function describeError(err) {
  if (err == null) {
    return null
  }
  return {
    type: err.type === undefined ? null : err.type,
    message: err.message === undefined ? String(err) : err.message,
    code: err.code === undefined ? null : err.code,
  }
}

async function main() {
  const { url, transport, calls, timeoutMs, token } = parseCommandLine()
  const kite = new Kite({
    url,
    autoConnect: false,
    autoReconnect: false,
    logLevel: LOG_LEVEL,
    // kite.js copies options.auth into every request's "authentication" field.
    ...(token === undefined ? {} : { auth: { type: 'token', key: token } }),
    ...transportOptions(transport),
  })

  try {
    await connect(kite, url, timeoutMs)
  } catch (err) {
    fail(err.message)
  }
  // A close after this point fails the call in flight through its timeout.
  kite.removeAllListeners('close')
  kite.removeAllListeners('error')
  kite.on('error', (text, event) => {
    process.stderr.write(`client.js: transport error: ${text} ${event && event.message ? event.message : ''}\n`)
  })

  for (const [method, params] of calls) {
    let line
    try {
      const result = await withTimeout(kite.tell(method, params), timeoutMs, `call ${method}`)
      line = { method, result: result === undefined ? null : result, error: null }
    } catch (err) {
      if (err instanceof DeadlineError) {
        fail(err.message)
      }
      line = { method, result: null, error: describeError(err) }
    }
    process.stdout.write(JSON.stringify(line) + '\n')
  }

  kite.disconnect()
  // sockjs-client keeps timers alive after close, so exit explicitly once stdout is flushed.
  process.stdout.write('', () => process.exit(0))
}

main().catch((err) => fail(err && err.stack ? err.stack : String(err)))
