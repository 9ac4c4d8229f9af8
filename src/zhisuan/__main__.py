from zhisuan.cli.main import main

main()
