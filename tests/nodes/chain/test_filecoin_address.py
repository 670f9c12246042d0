"""Filecoin addresses against go-address's vectors (strings) and ref-fvm's (bytes, from its
shared/tests/address_test.rs cbor_encoding)."""
import pytest

from zqnode.nodes.chain.filecoin.address import Address, AddressError


@pytest.mark.parametrize("text, data", [
    ("f00", "0000"), ("f01", "0001"), ("f010", "000a"), ("f0150", "009601"), ("f0499", "00f303"),
    ("f01024", "008008"), ("f01729", "00c10d"), ("f0999999", "00bf843d"),
    ("f15ihq5ibzwki2b4ep2f46avlkrqzhpqgtga7pdrq", "01ea0f0ea039b291a0f08fd179e0556a8c3277c0d3"),
    ("f12fiakbhe2gwd5cnmrenekasyn6v5tnaxaqizq6a", "01d1500504e4d1ac3e89ac891a4502586fabd9b417"),
    ("f1wbxhu3ypkuo6eyp6hjx6davuelxaxrvwb2kuwva", "01b06e7a6f0f551de261fe3a6fe182b422ee0bc6b6"),
    ("f17uoq6tp427uzv7fztkbsnn64iwotfrristwpryy", "01fd1d0f4dfcd7e99afcb99a8326b7dc459d32c628"),
    ("f25nml2cfbljvn4goqtclhifepvfnicv6g7mfmmvq", "02eb58bd08a15a6ade19d0989674148fa95a8157c6"),
    ("f2nuqrg7vuysaue2pistjjnt3fadsdzvyuatqtfei", "026d21137eb4c4814269e894d296cf6500e43cd714"),
    ("f3vvmn62lofvhjd2ugzca6sof2j2ubwok6cj4xxbfzz4yuxfkgobpihhd2thlanmsh3w2ptld2gqkn2jvlss4a",
     "03ad58df696e2d4e91ea86c881e938ba4ea81b395e12797b84b9cf314b9546705e839c7a99d606b247ddb4f9ac7a3414dd"),
    ("f3q22fijmmlckhl56rn5nkyamkph3mcfu5ed6dheq53c244hfmnq2i7efdma3cj5voxenwiummf2ajlsbxc65a",
     "0386b454258c589475f7d16f5aac018a79f6c1169d20fc33921dd8b5ce1cac6c348f90a3603624f6aeb91b64518c2e8095"),
    ("f432f77777777x32lpna", "0420ffffffffff"),                     # go-address TestDelegatedAddress
    ("f49223372036854775807fiic6zsy", "04ffffffffffffffff7f"),
])
def test_published_vectors(text, data):
    a = Address.parse(text)
    assert a.bytes.hex() == data
    assert Address.from_bytes(bytes.fromhex(data)).text() == text
    assert Address.parse("t" + text[1:]) == a and a.text("t") == "t" + text[1:]


def test_actor_ids():
    assert Address.parse("t09223372036854775807").actor_id == 2**63 - 1
    assert Address.id(1000).text() == "f01000" and Address.id(1000).bytes == bytes.fromhex("00e807")


@pytest.mark.parametrize("text", [
    "Q2gfvuyh7v2sx3patm5k23wdzmhyhtmqctasbr23y",    # network
    "t5gfvuyh7v2sx3patm5k23wdzmhyhtmqctasbr23y",    # protocol
    "t2gfvuyh7v2sx3patm5k23wdzmhyhtmqctasbr24y",    # checksum
    "t0banananananannnnnnn", "t2", "t", "t0", "t1234q", "t09223372036854775808", "f001",
    "f1xpbyy4tkdx5si2bgo37dubc2xwv6fum5tk57mid",    # go-address TestTrailingBits
    "f1XPBYY4TKDX5SI2BGO37DUBC2XWV6FUM5TK57MIA", "a" * 116, 3,
    "f\u0660100", "f\u00b2aaaa", "f0\u0661",                 # digits that are not ASCII
])
def test_refused_strings(text):
    with pytest.raises(AddressError):
        Address.parse(text)


@pytest.mark.parametrize("data", ["050404", "00", "01" + "aa" * 19, "01" + "aa" * 21, "03" + "aa" * 47,
                                  "0400" + "aa" * 55, "04ff", "0080", "00ffffffffffffffffff01", "000101", ""])
def test_refused_bytes(data):
    with pytest.raises(AddressError):
        Address.from_bytes(bytes.fromhex(data))
