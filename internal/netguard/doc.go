// Package netguard is the one way the server reaches a URL a user gave it:
// webhooks, reference images, and any later download. A Guard makes HTTP
// requests that only connect to addresses its Policy allows, checking the
// address actually connected to, after DNS resolution and on every
// redirect hop; Fetch adds a time limit, a size limit and typed errors
// whose Reason can be shown to the user; Redact makes URLs safe to log.
//
// The refused address ranges, the decisions behind them and how host
// spellings such as 0x7f000001 are handled are described in
// docs/netguard.md.
package netguard
