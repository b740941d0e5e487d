// Argument checks in the style of Node's own (`validateString`, `validateInteger`…): the same
// codes, the same "Received …" wording, nothing coerced. Each reads the value it is given; the
// callers read every option exactly once.
'use strict'

const { inspect } = require('node:util')

function codedError(Class, code, message) {
  const error = new Class(message)
  error.code = code
  return error
}

const kind = (name) => (name.includes('.') || name.includes('[') ? 'property' : 'argument')

/** Node's " Received …" suffix. Never throws, whatever the value is. */
function received(value) {
  try {
    if (value == null) return ` Received ${value}`
    if (typeof value === 'function') return ` Received function ${value.name}`.trimEnd()
    if (typeof value === 'object') {
      const name = value.constructor?.name
      return name ? ` Received an instance of ${name}` : ` Received ${inspect(value, { depth: -1 })}`
    }
    let shown = inspect(value, { colors: false })
    if (shown.length > 28) shown = `${shown.slice(0, 25)}...`
    return ` Received type ${typeof value} (${shown})`
  } catch {
    return ' Received an unreadable value'
  }
}

function invalidType(name, expected, value) {
  return codedError(TypeError, 'ERR_INVALID_ARG_TYPE', `The "${name}" ${kind(name)} must be ${expected}.${received(value)}`)
}

function outOfRange(name, range, value) {
  return codedError(TypeError, 'ERR_OUT_OF_RANGE', `The value of "${name}" is out of range. It must be ${range}. Received ${String(value)}`)
}

function invalidValue(name, reason, value) {
  let shown
  try {
    shown = inspect(value)
  } catch {
    shown = 'an unreadable value'
  }
  return codedError(TypeError, 'ERR_INVALID_ARG_VALUE', `The ${kind(name)} '${name}' ${reason}. Received ${shown}`)
}

function validateObject(value, name) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalidType(name, 'of type object', value)
  return value
}

function validateString(value, name) {
  if (typeof value !== 'string') throw invalidType(name, 'of type string', value)
  return value
}

function validateBoolean(value, name) {
  if (typeof value !== 'boolean') throw invalidType(name, 'of type boolean', value)
  return value
}

function validateFunction(value, name) {
  if (typeof value !== 'function') throw invalidType(name, 'of type function', value)
  return value
}

/** A number in [min, max]; with `infinity`, Infinity too. */
function validateNumber(value, name, min, max, { integer = false, infinity = false } = {}) {
  if (typeof value !== 'number') throw invalidType(name, 'of type number', value)
  if (infinity && value === Infinity) return value
  if (!(value >= min && value <= max) || (integer && !Number.isInteger(value))) {
    const range = `${integer ? 'an integer' : 'a number'} >= ${min} and <= ${max}${infinity ? ' (or Infinity)' : ''}`
    throw outOfRange(name, range, value)
  }
  return value
}

/** A string without NUL bytes (which no path, program or variable can carry). */
function validatePlainString(value, name, { empty = true } = {}) {
  validateString(value, name)
  if (!empty && value === '') throw invalidValue(name, 'must be a non-empty string', value)
  if (value.includes('\0')) throw invalidValue(name, 'must not contain NUL bytes', value)
  return value
}

module.exports = {
  codedError,
  invalidType,
  invalidValue,
  outOfRange,
  validateBoolean,
  validateFunction,
  validateNumber,
  validateObject,
  validatePlainString,
  validateString,
}
