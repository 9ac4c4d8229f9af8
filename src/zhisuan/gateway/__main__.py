from zhisuan.gateway.server import main

main()
