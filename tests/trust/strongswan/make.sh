set -e  # in an empty directory; keys are made and left there, only the certificates and the CRL are kept
D="--dateform %Y-%m-%d --not-before 2026-01-01 --not-after 2036-01-01"
pki --gen --type ecdsa --size 384 > root.key
pki --self --in root.key --type ecdsa --ca --dn "C=CH, O=strongSwan, CN=strongSwan Root CA" $D --outform pem > root.pem
pki --gen --type rsa --size 2048 > inter.key
pki --issue --in inter.key --type rsa --cacert root.pem --cakey root.key --ca --dn "C=CH, O=strongSwan, CN=strongSwan Intermediate CA" $D --outform pem > inter.pem
pki --gen --type ecdsa > carol.key
pki --issue --in carol.key --type ecdsa --cacert inter.pem --cakey inter.key --dn "C=CH, O=strongSwan, CN=carol@strongswan.org" --san carol@strongswan.org --flag clientAuth $D --serial 0102 --outform pem > carol.pem
pki --gen --type rsa --size 2048 > moon.key
pki --issue --in moon.key --type rsa --cacert inter.pem --cakey inter.key --dn "C=CH, O=strongSwan, CN=moon.strongswan.org" --san moon.strongswan.org --san 192.168.0.1 --flag serverAuth --flag ikeIntermediate --rsa-padding pss $D --serial 0103 --outform pem > moon.pem
pki --gen --type ecdsa > dave.key
pki --issue --in dave.key --type ecdsa --cacert inter.pem --cakey inter.key --dn "C=CH, O=strongSwan, CN=dave@strongswan.org" --san dave@strongswan.org $D --serial 0104 --outform pem > dave.pem
pki --signcrl --cacert inter.pem --cakey inter.key --reason key-compromise --date 1780000000 --cert dave.pem --dateform %Y-%m-%d --this-update 2026-06-01 --next-update 2036-01-01 --outform pem > inter.crl
pki --gen --type ed25519 > edroot.key
pki --self --in edroot.key --type ed25519 --ca --dn "C=CH, O=strongSwan, CN=strongSwan Ed25519 CA" $D --outform pem > edroot.pem
pki --gen --type ed25519 > sun.key
pki --issue --in sun.key --type ed25519 --cacert edroot.pem --cakey edroot.key --dn "C=CH, O=strongSwan, CN=sun.strongswan.org" --san sun.strongswan.org $D --outform pem > sun.pem
