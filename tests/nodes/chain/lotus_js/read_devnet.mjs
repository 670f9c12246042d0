// node read_devnet.mjs WS_URL TOKEN MINER MESSAGE_CID: prints what the Lotus JS client read, as JSON
import { LotusRPC } from '@filecoin-shipyard/lotus-client-rpc'
import { NodejsProvider } from '@filecoin-shipyard/lotus-client-provider-nodejs'
import { mainnet } from '@filecoin-shipyard/lotus-client-schema'

const [url, token, miner, messageCid] = process.argv.slice(2)
const client = new LotusRPC(new NodejsProvider(url, { token }), { schema: mainnet.fullNode })
const head = await client.chainHead()
const deadline = await client.stateMinerProvingDeadline(miner, [])
const deadlines = await client.stateMinerDeadlines(miner, [])
const info = await client.stateMinerInfo(miner, [])
const landed = await client.stateWaitMsg({ '/': messageCid }, 1, 100, true)
const message = await client.chainGetMessage({ '/': messageCid })
const changes = []
await new Promise((resolve) => {
  const [cancel] = client.chainNotify((batch) => {
    changes.push(...batch.map((c) => [c.Type, c.Val.Height]))
    if (changes.length >= 3) cancel().then(resolve)
  })
})
// without a token a client may read, and only read
const anonymous = new LotusRPC(new NodejsProvider(url), { schema: mainnet.fullNode })
let refused = ''
try {
  await anonymous.mpoolPushMessage({}, null)
} catch (e) {
  refused = e.message
}
const anonymousHead = await anonymous.chainHead()
console.log(JSON.stringify({ head, deadline, deadlines, info, landed, message, changes, refused, anonymousHead }))
await client.destroy()
await anonymous.destroy()
